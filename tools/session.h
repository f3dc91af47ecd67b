// Session, the CLI's: model + data + loss built from the common options every subcommand shares
// (DESIGN.md "Common options"), and the Context it hands to the library's diagnostics.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "batch_loss.h"
#include "context.h"
#include "data.h"
#include "distributed.h"
#include "loss.h"
#include "network.h"
#include "provenance.h"

namespace bs {

enum class Device { Cpu, Cuda };

struct CommonOptions {
  std::string model = "gpt2-tiny";
  std::vector<std::string> sets;  // --set key=value
  std::string data = "brown";
  std::string val_data;  // --val-data: an .h5 validation set for .h5 --data
  std::string tokenizer = "byte";
  LossKind loss = LossKind::CrossEntropy;
  int64_t batch_size = 8;
  int64_t seq_len = 0;  // 0: the model preset's
  uint64_t seed = 0;
  torch::Dtype dtype = torch::kFloat32;  // float32 or float64
  Device device = Device::Cpu;
  int threads = 0;  // 0: LibTorch's default
  std::string out = "out";
  bool shuffle = false;
  std::string params_file;                       // --params: start from parameters saved by name (e.g. final_params.h5)
  int64_t dim = 0, n_heads = 0, n_kv_heads = 0;  // for TorchScript attention models
  dist::DistOptions dist;                        // --dist-backend, --dist-timeout (used when WORLD_SIZE > 1)
};

struct Session {
  CommonOptions opt;
  std::unique_ptr<Network> net;
  std::unique_ptr<DataSource> data;
  LossKind loss = LossKind::CrossEntropy;
  torch::Dtype dtype = torch::kFloat32;

  // This rank's share of global batch i (the whole batch when not distributed): --batch-size is global.
  Batch train_batch(int64_t i) const { return dist::shard(batch_to(data->train_batch(i), dtype), "--batch-size"); }
  Batch val_batch(int64_t i) const { return dist::shard(batch_to(data->val_batch(i), dtype), "--batch-size"); }
  // What the diagnostics read: network, loss, training batches, seed and labels.
  Context context() const {
    Context c;
    c.net = net.get();
    c.loss = loss;
    c.dtype = dtype;
    c.train_batch = [this](int64_t i) { return train_batch(i); };
    c.seed = opt.seed;
    c.model = opt.model;
    c.data = opt.data;
    c.data_about = data->describe();
    return c;
  }
};

Session open_session(const CommonOptions& opt);

// The intra-op threads a training run takes when --threads is not given: every core this process may
// run on, shared among the ranks of this host when data parallel (LOCAL_WORLD_SIZE, else WORLD_SIZE);
// 0 (LibTorch's default) where OMP_NUM_THREADS is set, which then decides, as in PyTorch.
int default_training_threads();

// Copies every parameter from the dataset of the same name in an .h5 file (final_params.h5).
void load_params(Network& net, const std::string& path);

// Creates --out if needed and proves it writable; throws UserError naming the folder otherwise. Takes
// the folder's advisory lock (one writer per folder) and then removes temporary files left there by
// killed runs.
void prepare_out_dir(const std::string& dir);
// Creates `dir` if needed and proves it writable; the UserError names `option` (e.g. "--export-hf").
void ensure_writable_dir(const std::string& dir, const std::string& option);

}  // namespace bs
