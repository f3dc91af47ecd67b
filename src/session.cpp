// Building a Session; dtype and thread settings are applied here once.
#include "session.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "errors.h"
#include "h5io.h"
#include "models/hf_checkpoint.h"
#include "models/model_zoo.h"
#include "tokenizer.h"

namespace bs {

std::string& command_line() {
  static std::string line;
  return line;
}

void prepare_out_dir(const std::string& dir) {
  std::string partial;
  std::stringstream ss(dir);
  std::string part;
  if (!dir.empty() && dir[0] == '/') partial = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += part + "/";
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      throw UserError("--out '" + dir + "': cannot create folder (" + std::strerror(errno) + ")");
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw UserError("--out '" + dir + "': not a folder");
  const std::string probe = dir + "/.blocksharp-write-test." + std::to_string(getpid());
  std::ofstream f(probe);
  f << "x";
  f.close();
  if (!f) {
    std::remove(probe.c_str());
    throw UserError("--out '" + dir + "': folder is not writable");
  }
  std::remove(probe.c_str());
}

void load_params(Network& net, const std::string& path) {
  torch::NoGradGuard g;
  for (auto& [name, t] : net.named_parameters()) {
    if (!h5_has_dataset(path, name))
      throw UserError("--params '" + path + "': no dataset for parameter '" + name + "' (saved from another model?)");
    auto v = read_h5_dataset(path, name, "--params");
    if (v.sizes() != t.sizes())
      throw UserError("--params '" + path + "': parameter '" + name + "' has another shape than the model's");
    t.copy_(v.to(t.scalar_type()));
  }
}

Session open_session(const CommonOptions& opt) {
  Session s;
  s.opt = opt;
  s.loss = loss_kind_from_string(opt.loss);
  if (opt.dtype == "float32") s.dtype = torch::kFloat32;
  else if (opt.dtype == "float64") s.dtype = torch::kFloat64;
  else throw UserError("--dtype '" + opt.dtype + "': expected float32 or float64");
  if (opt.device == "cuda") {
    if (!torch::cuda::is_available()) throw UserError("--device cuda: no CUDA device (or this LibTorch has no CUDA)");
    throw UserError("--device cuda: not supported yet by this build (use --device cpu)");
  } else if (opt.device != "cpu") {
    throw UserError("--device '" + opt.device + "': expected cpu or cuda");
  }
  dist::init_from_env(opt.dist);
  if (opt.threads < 0) throw UserError("--threads must be >= 0");
  if (opt.threads > 0) torch::set_num_threads(opt.threads);

  DataOptions d;
  d.name = opt.data;
  d.tokenizer = opt.tokenizer;
  d.batch_size = opt.batch_size;
  d.seed = opt.seed;
  d.shuffle = opt.shuffle;
  std::optional<HfCheckpoint> hf;
  if (is_hf_spec(opt.model)) {
    if (!opt.sets.empty()) throw UserError("--set applies to built-in presets only, not to '" + opt.model + "'");
    hf = read_hf_checkpoint(opt.model);
    const ModelConfig& cfg = hf->config;
    const int64_t tok_vocab = tokenizer_vocab_size(opt.tokenizer);
    if (tok_vocab > cfg.vocab)
      throw UserError("--tokenizer " + opt.tokenizer + " has " + std::to_string(tok_vocab) + " tokens, more than the vocab_size " +
                      std::to_string(cfg.vocab) + " of '" + opt.model + "'");
    if (opt.seq_len > cfg.seq_len)
      throw UserError("--seq-len " + std::to_string(opt.seq_len) + " exceeds the context of '" + opt.model + "' (" +
                      std::to_string(cfg.seq_len) + ")");
    d.seq_len = opt.seq_len > 0 ? opt.seq_len : std::min<int64_t>(cfg.seq_len, 1024);
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
    if (cfg.seq_len > 0 && opt.seq_len > cfg.seq_len)
      throw UserError("--seq-len " + std::to_string(opt.seq_len) + " exceeds the context of model '" + opt.model +
                      "' (" + std::to_string(cfg.seq_len) + "); give --set seq_len=" + std::to_string(opt.seq_len) +
                      " to build the model with a longer context");
    d.seq_len = opt.seq_len > 0 ? opt.seq_len : cfg.seq_len > 0 ? cfg.seq_len : 64;
    s.net = build_network(opt.model, cfg, opt.seed);
  }
  s.data = make_data(d);
  s.net->to(s.dtype);
  if (hf) load_hf_params(*s.net, *hf);  // after the dtype change, so float64 checkpoints keep every digit
  if (!opt.params_file.empty()) load_params(*s.net, opt.params_file);
  s.net->set_train(false);  // no dropout or batch norm in the zoo; eval() for TorchScript modules
  return s;
}

torch::Tensor batch_loss(Network& net, const Batch& batch, LossKind loss, const std::string& data_name) {
  torch::Tensor out;
  try {
    out = net.forward(batch.inputs);
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    std::ostringstream s;
    s << "model '" << net.info().name << "' rejected inputs of shape " << batch.inputs.sizes() << " from --data '"
      << data_name << "': " << torch_error_line(e);
    throw UserError(s.str());
  }
  return compute_loss(out, batch.targets, loss);
}

}  // namespace bs
