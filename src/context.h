// Context: what a measurement reads from its surroundings -- the network and its loss, the batches by
// index, a seed, and the labels its files and errors carry. The CLI builds one from its Session, the
// Python module from the user's module and batches; diagnostics never see command-line options.
#pragma once
#include <functional>
#include <string>

#include "data.h"
#include "dtype_words.h"
#include "loss.h"
#include "network.h"

namespace bs {

struct Context {
  Network* net = nullptr;
  LossKind loss = LossKind::CrossEntropy;
  torch::Dtype dtype = torch::kFloat32;
  std::function<Batch(int64_t)> train_batch;  // training batch i, as this process holds it
  uint64_t seed = 0;
  std::string model;       // the model's name (files' "model" attribute)
  std::string data;        // the data's name, as the user gave it (errors)
  std::string data_about;  // the data described (files' "data" attribute)
};

}  // namespace bs
