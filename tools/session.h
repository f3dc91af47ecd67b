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
#include "out_dir.h"
#include "provenance.h"
#include "run.h"

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

// The CLI's Run: built by open_session from the options, which it keeps.
struct Session : Run {
  CommonOptions opt;
};

Session open_session(const CommonOptions& opt);

// The intra-op threads a training run takes when --threads is not given: every core this process may
// run on, shared among the ranks of this host when data parallel (LOCAL_WORLD_SIZE, else WORLD_SIZE);
// 0 (LibTorch's default) where OMP_NUM_THREADS is set, which then decides, as in PyTorch.
int default_training_threads();

// One line on stderr when `threads` is more than the cores this process may run on ("blocksharp:
// warning: FLAG N is more than the C cores here; ..."): the threads beyond them only wait for each
// other, and a benchmark's figures then measure that. Nothing for 0 (a default) or fewer.
void warn_threads_beyond_cores(const char* flag, int threads);

// Copies every parameter from the dataset of the same name in an .h5 file (final_params.h5).
void load_params(Network& net, const std::string& path);

}  // namespace bs
