// Building a Session; dtype and thread settings are applied here once.
#include "session.h"

#include <dirent.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <climits>
#include <optional>
#include <set>
#include <sstream>

#include "cli_common.h"
#include "dtype_words.h"
#include "errors.h"
#include "finite_check.h"
#include "memory.h"
#include "h5io.h"
#include "models/hf_checkpoint.h"
#include "models/model_zoo.h"
#include "tokenizer.h"

namespace bs {

void load_params(Network& net, const std::string& path) {
  require_h5_file(path, "--params");
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // all checked before any is copied
  for (auto& [name, t] : net.named_parameters()) {
    if (!h5_has_dataset(path, name))
      throw UserError("--params '" + path + "': no dataset for parameter '" + name + "' (saved from another model?)");
    auto v = read_h5_dataset(path, name, "--params", t.sizes().vec());  // refuses another shape, naming it
    if (!all_finite(v)) throw UserError("--params '" + path + "': parameter '" + name + "' holds NaN or Inf");
    copies.emplace_back(t, v);
  }
  torch::NoGradGuard g;
  for (auto& [t, v] : copies) t.copy_(v.to(t.scalar_type()));
}

namespace {
// The cores this process may run on (its affinity mask; the online count where that is unknown).
int usable_cores() {
  cpu_set_t set;
  const int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  return cores > 0 ? cores : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
}
}  // namespace

void warn_threads_beyond_cores(const char* flag, int threads) {
  const int cores = usable_cores();
  if (threads > 0 && cores > 0 && threads > cores)
    warn(std::string(flag) + " " + std::to_string(threads) + " is more than the " + std::to_string(cores) +
         " cores here; threads beyond them only wait for each other");
}

int default_training_threads() {
  if (std::getenv("OMP_NUM_THREADS")) return 0;
  const int cores = usable_cores();
  int ranks = 1;
  for (const char* var : {"LOCAL_WORLD_SIZE", "WORLD_SIZE"})
    if (const char* v = std::getenv(var)) {
      ranks = std::max(1, std::atoi(v));
      break;
    }
  return std::max(1, cores / ranks);
}

Session open_session(const CommonOptions& opt) {
  available_memory_bytes();  // a malformed BLOCKSHARP_MEMORY_BUDGET is one line now, not after the model is built
  Session s;
  s.opt = opt;
  s.loss = opt.loss;
  const auto& dtypes = dtype_words();
  if (std::none_of(dtypes.begin(), dtypes.end(), [&](const auto& w) { return w.second == opt.dtype; }))
    throw UserError(std::string("--dtype '") + dtype_name(opt.dtype) + "': expected " + word_list(dtypes));
  s.dtype = opt.dtype;
  // What the flows' files and errors say of the run.
  s.seed = opt.seed;
  s.model = opt.model;
  s.data_name = opt.data;
  s.batch_size = opt.batch_size;
  if (opt.device == Device::Cuda) {
    if (!torch::cuda::is_available()) throw UserError("--device cuda: no CUDA device (or this LibTorch has no CUDA)");
    throw UserError("--device cuda: not supported yet by this build (use --device cpu)");
  }
  dist::init_from_env(opt.dist);
  require_non_negative("--threads", opt.threads, "LibTorch default");
  require_non_negative("--seq-len", opt.seq_len, "the model's context");
  if (opt.threads > 0) {
    warn_threads_beyond_cores("--threads", opt.threads);
    torch::set_num_threads(opt.threads);
  }

  DataOptions d;
  d.name = opt.data;
  d.val_data = opt.val_data;
  d.tokenizer = opt.tokenizer;
  d.batch_size = opt.batch_size;
  d.seed = opt.seed;
  d.shuffle = opt.shuffle;
  std::optional<HfCheckpoint> hf;
  const int64_t value_bytes = static_cast<int64_t>(c10::elementSize(s.dtype));  // the model's, after s.net->to
  if (is_hf_spec(opt.model)) {
    if (!opt.sets.empty()) throw UserError("--set applies to built-in presets only, not to '" + opt.model + "'");
    const ModelConfig sizes = read_hf_config(opt.model);  // checked before any tensor is read
    d.seq_len = opt.seq_len > 0 ? opt.seq_len : std::min<int64_t>(sizes.seq_len, 1024);
    require_model_fits(sizes, value_bytes, opt.batch_size, d.seq_len, "'" + hf_config_path(opt.model) + "'");
    hf = read_hf_checkpoint(opt.model);
    const ModelConfig& cfg = hf->config;
    const int64_t tok_vocab = tokenizer_vocab_size(opt.tokenizer);
    if (tok_vocab > cfg.vocab)
      throw UserError("--tokenizer " + opt.tokenizer + " has " + std::to_string(tok_vocab) +
                      " tokens, more than the vocab_size " + std::to_string(cfg.vocab) + " of '" + opt.model + "'");
    require_within_context(opt.seq_len, cfg.seq_len, "'" + opt.model + "'");
    s.net = build_network(opt.model, cfg, opt.seed);
  } else if (is_torchscript_path(opt.model)) {
    s.net = load_torchscript(opt.model);
    auto& info = s.net->info();
    info.dim = opt.dim;
    info.n_heads = opt.n_heads;
    info.n_kv_heads = opt.n_kv_heads > 0 ? opt.n_kv_heads : opt.n_heads;
    d.seq_len = opt.seq_len > 0 ? opt.seq_len : 64;
    if (!opt.sets.empty()) throw UserError("--set applies to built-in models only, not to '" + opt.model + "'");
  } else {
    // --seq-len is the data's sequence length; the model's context stays the preset's (or --set seq_len=).
    const ModelConfig cfg = resolve_model_config(opt.model, opt.sets, tokenizer_vocab_size(opt.tokenizer), 0);
    const bool text = opt.data == "brown" || opt.data == "pydocs";
    if (text && cfg.vocab > 0 && cfg.vocab < tokenizer_vocab_size(opt.tokenizer))  // ids past the embedding
      throw UserError("--set vocab=" + std::to_string(cfg.vocab) + " is smaller than --tokenizer " + opt.tokenizer +
                      "'s " + std::to_string(tokenizer_vocab_size(opt.tokenizer)) + " tokens");
    if (cfg.seq_len > 0)
      require_within_context(
          opt.seq_len, cfg.seq_len, "model '" + opt.model + "'",
          "; give --set seq_len=" + std::to_string(opt.seq_len) + " to build the model with a longer context");
    d.seq_len = opt.seq_len > 0 ? opt.seq_len : cfg.seq_len > 0 ? cfg.seq_len : 64;
    std::string what = "--model '" + opt.model + "'";
    for (const auto& kv : opt.sets) what += " --set " + kv;
    require_model_fits(cfg, value_bytes, opt.batch_size, d.seq_len, what);
    s.net = build_network(opt.model, cfg, opt.seed);
  }
  s.data = make_data(d);
  // Token ids outside the embedding would fail deep inside the first forward: refuse them here.
  if (const auto [lo, hi] = s.data->input_id_range();
      s.net->info().vocab > 0 && hi >= lo && (lo < 0 || hi >= s.net->info().vocab))
    throw UserError("--data '" + opt.data + "': token id " + std::to_string(lo < 0 ? lo : hi) +
                    " is outside the vocabulary of model '" + opt.model + "' (" + std::to_string(s.net->info().vocab) +
                    " tokens)");
  s.net->to(s.dtype);
  if (hf) load_hf_params(*s.net, *hf);  // after the dtype change, so float64 checkpoints keep every digit
  if (!opt.params_file.empty()) load_params(*s.net, opt.params_file);
  s.params_from = opt.params_file;
  s.net->set_train(false);  // no dropout or batch norm in the zoo; eval() for TorchScript modules
  return s;
}

}  // namespace bs
