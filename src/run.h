// Run: what a flow works on -- the network, its data and loss, the seed, and the labels its files and
// errors carry. The CLI's Session is one, built from its options; the Python module builds one from the
// user's module and batches. context() is the part the diagnostics read.
#pragma once
#include <memory>
#include <string>

#include "context.h"
#include "data.h"
#include "distributed.h"
#include "loss.h"
#include "network.h"

namespace bs {

struct Run {
  std::unique_ptr<Network> net;
  std::unique_ptr<DataSource> data;
  LossKind loss = LossKind::CrossEntropy;
  torch::Dtype dtype = torch::kFloat32;
  uint64_t seed = 0;
  std::string model;        // the model's name
  std::string data_name;    // the data as the user gave it (errors)
  int64_t batch_size = 0;   // rows of a global batch
  std::string params_from;  // the file the parameters were loaded from ("": as initialised)

  // This rank's share of global batch i (the whole batch when not distributed): batch_size is global.
  Batch train_batch(int64_t i) const { return dist::shard(batch_to(data->train_batch(i), dtype), param("batch_size")); }
  Batch val_batch(int64_t i) const { return dist::shard(batch_to(data->val_batch(i), dtype), param("batch_size")); }
  Context context() const {
    Context c;
    c.net = net.get();
    c.loss = loss;
    c.dtype = dtype;
    c.train_batch = [this](int64_t i) { return train_batch(i); };
    c.seed = seed;
    c.model = model;
    c.data = data_name;
    c.data_about = data->describe();
    return c;
  }
};

}  // namespace bs
