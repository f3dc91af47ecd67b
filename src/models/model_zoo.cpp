// Presets: "tiny" (0.1-0.5M parameters, for tests), "small-cpu" (5-10M, for CPU experiments) and
// "gpt2-124m" (GPT-2 small: 12 layers, dim 768, 12 heads, context 1024; 124M with --tokenizer gpt2).
#include "model_zoo.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "../errors.h"
#include "../memory.h"
#include "gpt2.h"
#include "llama.h"
#include "vision.h"

namespace bs {

// One row per preset, ModelConfig's fields in order.
static const std::map<std::string, ModelConfig>& presets() {
  // clang-format off
  static const std::map<std::string, ModelConfig> p = {
      // name               family   layers dim  heads kv vocab  seq   ffn tied   in   classes hidden
      {"gpt2-tiny",       {"gpt2",  2,     64,  4,    0, 256,   64,   0,  true,  784, 10,     128}},
      {"gpt2-small-cpu",  {"gpt2",  8,     256, 8,    0, 256,   128,  0,  true,  784, 10,     128}},
      {"gpt2-124m",       {"gpt2",  12,    768, 12,   0, 50257, 1024, 0,  true,  784, 10,     128}},  // GPT-2 small
      {"llama-tiny",      {"llama", 2,     64,  4,    2, 256,   64,   0,  false, 784, 10,     128}},
      {"llama-small-cpu", {"llama", 8,     256, 8,    4, 256,   128,  0,  false, 784, 10,     128}},
      {"mlp-mnist",       {"mlp",   2,     64,  4,    0, 0,     0,    0,  false, 784, 10,     128}},
      {"cnn-mnist",       {"cnn",   2,     64,  4,    0, 0,     0,    0,  false, 784, 10,     32}},
  };
  // clang-format on
  return p;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, cfg] : presets()) names.push_back(name);
  return names;
}

bool is_preset(const std::string& name) { return presets().count(name) > 0; }

std::string preset_list() {
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  return list;
}

bool is_torchscript_path(const std::string& model) {
  return model.find('/') != std::string::npos || (model.size() > 3 && model.compare(model.size() - 3, 3, ".pt") == 0);
}

static int64_t parse_int(const std::string& key, const std::string& value) {
  try {
    size_t used = 0;
    long long v = std::stoll(value, &used);
    if (used == value.size() && v >= 0) return v;
  } catch (const std::exception&) {}
  throw UserError(param("set") + " " + key + "=" + value + ": expected a non-negative integer");
}

ModelConfig resolve_model_config(const std::string& preset, const std::vector<std::string>& sets, int64_t vocab,
                                 int64_t seq_len) {
  auto it = presets().find(preset);
  if (it == presets().end())
    throw UserError(param("model") + " '" + preset + "': unknown model (built-in presets: " + preset_list() +
                    "; or give a path to a TorchScript .pt file)");
  ModelConfig c = it->second;
  const bool is_lm = c.language_model();
  if (is_lm && vocab > 0) c.vocab = vocab;
  if (is_lm && seq_len > 0) c.seq_len = seq_len;
  const std::map<std::string, int64_t*> ints = {
      {"n_layer", &c.n_layer}, {"dim", &c.dim},         {"n_heads", &c.n_heads}, {"n_kv_heads", &c.n_kv_heads},
      {"vocab", &c.vocab},     {"seq_len", &c.seq_len}, {"ffn", &c.ffn},         {"hidden", &c.hidden}};
  for (const auto& kv : sets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw UserError(param("set") + " '" + kv + "': expected key=value");
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key == "tied") {
      if (value != "true" && value != "false" && value != "1" && value != "0")
        throw UserError(param("set") + " tied=" + value + ": expected true or false");
      c.tied = value == "true" || value == "1";
    } else if (auto f = ints.find(key); f != ints.end()) {
      *f->second = parse_int(key, value);
    } else {
      throw UserError(param("set") + " '" + key + "': unknown key for model '" + preset +
                      "' (known: n_layer, dim, n_heads, n_kv_heads, vocab, seq_len, tied, ffn, hidden)");
    }
  }
  if (is_lm) {
    if (c.dim <= 0 || c.n_heads <= 0)
      throw UserError(param("set") + ": dim and n_heads must be positive (dim " + std::to_string(c.dim) + ", n_heads " +
                      std::to_string(c.n_heads) + ")");
    if (c.dim % c.n_heads != 0)
      throw UserError(param("set") + ": dim (" + std::to_string(c.dim) + ") must be a multiple of n_heads (" +
                      std::to_string(c.n_heads) + ")");
    if (c.kv_heads() <= 0 || c.n_heads % c.kv_heads() != 0)
      throw UserError(param("set") + ": n_heads must be a multiple of n_kv_heads");
    if (c.family == "llama" && c.head_dim() % 2 != 0)
      throw UserError(param("set") + ": llama's head dimension dim / n_heads (" + std::to_string(c.head_dim()) +
                      ") must be even (RoPE rotates pairs of coordinates)");
    if (c.family == "gpt2" && c.n_kv_heads > 0 && c.n_kv_heads != c.n_heads)
      throw UserError(param("set") + " n_kv_heads: gpt2 models have no grouped-query attention (use a llama preset)");
    if (c.vocab <= 0 || c.seq_len <= 0 || c.n_layer <= 0)
      throw UserError(param("set") + ": vocab, seq_len and n_layer must be positive");
  } else if (c.hidden <= 0) {
    throw UserError(param("set") + " hidden=" + std::to_string(c.hidden) + ": must be positive");
  }
  return c;
}

double parameter_count(const ModelConfig& c) {
  const double d = static_cast<double>(c.dim), v = static_cast<double>(c.vocab),
               layers = static_cast<double>(c.n_layer), ffn = static_cast<double>(c.ffn_hidden()),
               head = c.tied ? 0 : v * d;  // lm_head unless tied
  if (c.family == "gpt2") {
    // wte, wpe; per layer ln_1, q/k/v/o with biases, ln_2, fc_in and fc_out with biases; ln_f.
    const double layer = 2 * d + 4 * (d * d + d) + 2 * d + (d * ffn + ffn) + (ffn * d + d);
    return v * d + static_cast<double>(c.seq_len) * d + layers * layer + 2 * d + head;
  }
  if (c.family == "llama") {
    // embed_tokens; per layer two RMSNorm weights, q and o (dim x dim), k and v (kv heads' width), and
    // gate, up and down, all without biases; norm.
    const double kv = static_cast<double>(c.kv_heads() * c.head_dim());
    const double layer = 2 * d + 2 * d * d + 2 * d * kv + 3 * d * ffn;
    return v * d + layers * layer + d + head;
  }
  if (c.family == "mlp") {  // the hidden layers, then the classes
    double n = 0, in = static_cast<double>(c.in_features);
    for (const int64_t width : c.mlp_widths()) {
      n += in * static_cast<double>(width) + static_cast<double>(width);
      in = static_cast<double>(width);
    }
    return n + in * static_cast<double>(c.n_classes) + static_cast<double>(c.n_classes);
  }
  // cnn: conv1 (1 -> 8, 3x3), conv2 (8 -> 16, 3x3), fc1 (16 * 7 * 7 -> hidden), fc2 (hidden -> classes)
  const double h = static_cast<double>(c.hidden), k = static_cast<double>(c.n_classes);
  return (9 * 8 + 8) + (8 * 9 * 16 + 16) + (16 * 7 * 7 * h + h) + (h * k + k);
}

double activation_floor(const ModelConfig& c, int64_t batch, int64_t seq_len) {
  if (!c.language_model()) return 0;
  const double tokens = static_cast<double>(batch) * static_cast<double>(seq_len);
  const double per_layer = static_cast<double>(c.dim + c.ffn_hidden() + c.n_heads * seq_len);
  return tokens * (2 * static_cast<double>(c.vocab) + static_cast<double>(c.n_layer) * per_layer);
}

void require_model_fits(const ModelConfig& c, int64_t bytes_per_value, int64_t batch, int64_t seq_len,
                        const std::string& what) {
  const int64_t avail = available_memory_bytes();
  if (avail < 0) return;  // unknown (not Linux): trust the user
  const double n = parameter_count(c), acts = activation_floor(c, batch, seq_len);
  const double need = (2 * n + acts) * static_cast<double>(bytes_per_value);
  if (need <= static_cast<double>(avail)) return;
  char count[32];
  std::snprintf(count, sizeof count, n < 1e9 ? "%.1fM" : "%.1fG", n < 1e9 ? n / 1e6 : n / 1e9);
  Message m = what + ": a " + c.family + " model of " + count + " parameters";
  if (acts > 0)
    m += " at " + param("batch_size") + " " + std::to_string(batch) + " of " + std::to_string(seq_len) + " tokens";
  m += " needs at least " + format_bytes(need);
  m += acts > 0 ? " (its parameters, their gradients and " + format_bytes(acts * static_cast<double>(bytes_per_value)) +
                      " of activations)"
                : std::string(" (its parameters and their gradients)");
  throw UserError(m + " but " + format_bytes(static_cast<double>(avail)) + " is available");
}

std::unique_ptr<Network> build_network(const std::string& preset, const ModelConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  ModelInfo info;
  info.name = preset;
  info.family = c.family;
  info.dim = c.dim;
  info.n_heads = c.n_heads;
  info.n_kv_heads = c.kv_heads();
  info.n_layer = c.n_layer;
  info.vocab = c.vocab;
  info.seq_len = c.seq_len;
  info.tied = c.tied;
  if (c.family == "gpt2") return std::make_unique<ZooNetwork<Gpt2>>(Gpt2(c), info);
  if (c.family == "llama") return std::make_unique<ZooNetwork<Llama>>(Llama(c), info);
  info.dim = info.n_heads = info.n_kv_heads = 0;
  if (c.family == "mlp") return std::make_unique<ZooNetwork<MlpNet>>(MlpNet(c), info);
  return std::make_unique<ZooNetwork<CnnNet>>(CnnNet(c), info);
}

}  // namespace bs
