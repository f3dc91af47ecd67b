// Hugging Face GPT-2 / LLaMA checkpoints <-> the built-in architectures (names and layouts mapped).
#include "hf_checkpoint.h"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "../errors.h"
#include "../json_file.h"
#include "../safetensors.h"

namespace bs {

namespace {

using json = nlohmann::json;

// One HF tensor <-> one built-in tensor: `ours` is HF's `hf` (transposed when Conv1D, or the rows
// [row0, row0 + rows) of HF's fused c_attn after the transpose).
struct Mapping {
  std::string ours, hf;
  bool transpose = false;
  int64_t part = -1, parts = 0;  // slice `part` of `parts` along our dim 0 (q, k, v of c_attn)
};

std::vector<Mapping> gpt2_mappings(const ModelConfig& c) {
  std::vector<Mapping> m = {{"wte.weight", "transformer.wte.weight"}, {"wpe.weight", "transformer.wpe.weight"}};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string o = "h." + std::to_string(i) + ".", h = "transformer.h." + std::to_string(i) + ".";
    for (const char* ln : {"ln_1", "ln_2"})
      for (const char* p : {".weight", ".bias"}) m.push_back({o + ln + p, h + ln + p});
    const char* qkv[] = {"q_proj", "k_proj", "v_proj"};
    for (int64_t j = 0; j < 3; ++j) {
      m.push_back({o + "attn." + qkv[j] + ".weight", h + "attn.c_attn.weight", true, j, 3});
      m.push_back({o + "attn." + qkv[j] + ".bias", h + "attn.c_attn.bias", false, j, 3});
    }
    m.push_back({o + "attn.o_proj.weight", h + "attn.c_proj.weight", true});
    m.push_back({o + "attn.o_proj.bias", h + "attn.c_proj.bias"});
    m.push_back({o + "mlp.fc_in.weight", h + "mlp.c_fc.weight", true});
    m.push_back({o + "mlp.fc_in.bias", h + "mlp.c_fc.bias"});
    m.push_back({o + "mlp.fc_out.weight", h + "mlp.c_proj.weight", true});
    m.push_back({o + "mlp.fc_out.bias", h + "mlp.c_proj.bias"});
  }
  m.push_back({"ln_f.weight", "transformer.ln_f.weight"});
  m.push_back({"ln_f.bias", "transformer.ln_f.bias"});
  if (!c.tied) m.push_back({"lm_head.weight", "lm_head.weight"});
  return m;
}

std::vector<Mapping> llama_mappings(const ModelConfig& c) {
  std::vector<Mapping> m = {{"embed_tokens.weight", "model.embed_tokens.weight"}};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string o = "layers." + std::to_string(i) + ".";
    for (const char* p :
         {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
          "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"})
      m.push_back({o + p + ".weight", "model." + o + p + ".weight"});
  }
  m.push_back({"norm.weight", "model.norm.weight"});
  if (!c.tied) m.push_back({"lm_head.weight", "lm_head.weight"});
  return m;
}

std::vector<Mapping> mappings(const ModelConfig& c) {
  return c.family == "gpt2" ? gpt2_mappings(c) : llama_mappings(c);
}

int64_t get_int(const json& j, const std::string& key, const std::string& path, int64_t fallback = -1) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback >= 0) return fallback;
    throw UserError("'" + path + "': missing key \"" + key + "\"");
  }
  if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0)
    throw UserError("'" + path + "': key \"" + key + "\" must be a positive integer");
  return j[key].get<int64_t>();
}

// A config.json value the built-in architecture fixes: anything else is refused, not approximated.
void require_value(const json& j, const std::string& key, double expected, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return;
  if (!j[key].is_number() || std::abs(j[key].get<double>() - expected) > 1e-12 * std::abs(expected))
    throw UserError("'" + path + "': \"" + key + "\" is " + j[key].dump() + "; the built-in architecture uses " +
                    json(expected).dump());
}

void require_string(const json& j, const std::string& key, const std::set<std::string>& ok, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return;
  if (!j[key].is_string() || !ok.count(j[key].get<std::string>()))
    throw UserError("'" + path + "': \"" + key + "\" is " + j[key].dump() +
                    ", which the built-in architecture does not implement");
}

ModelConfig config_from_json(const json& j, const std::string& path) {
  if (!j.is_object() || !j.contains("model_type") || !j["model_type"].is_string())
    throw UserError("'" + path + "': missing key \"model_type\"");
  const std::string type = j["model_type"].get<std::string>();
  ModelConfig c;
  if (type == "gpt2") {
    c.family = "gpt2";
    c.dim = get_int(j, "n_embd", path);
    c.n_heads = get_int(j, "n_head", path);
    c.n_layer = get_int(j, "n_layer", path);
    c.vocab = get_int(j, "vocab_size", path);
    c.seq_len = get_int(j, "n_positions", path, j.contains("n_ctx") ? get_int(j, "n_ctx", path) : 1024);
    c.ffn = get_int(j, "n_inner", path, 4 * c.dim);
    c.tied = j.value("tie_word_embeddings", true);
    require_value(j, "layer_norm_epsilon", 1e-5, path);
    require_string(j, "activation_function", {"gelu_new", "gelu_pytorch_tanh"}, path);
    for (const char* k : {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"})
      if (j.value(k, false)) throw UserError("'" + path + "': \"" + k + "\" true is not implemented");
  } else if (type == "llama" || type == "mistral") {
    c.family = "llama";
    c.dim = get_int(j, "hidden_size", path);
    c.n_heads = get_int(j, "num_attention_heads", path);
    c.n_kv_heads = get_int(j, "num_key_value_heads", path, c.n_heads);
    c.n_layer = get_int(j, "num_hidden_layers", path);
    c.vocab = get_int(j, "vocab_size", path);
    c.seq_len = get_int(j, "max_position_embeddings", path);
    c.ffn = get_int(j, "intermediate_size", path);
    c.tied = j.value("tie_word_embeddings", false);
    require_value(j, "rms_norm_eps", 1e-6, path);
    require_value(j, "rope_theta", 10000.0, path);
    require_string(j, "hidden_act", {"silu"}, path);
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
      throw UserError("'" + path + "': \"rope_scaling\" is not implemented");
    for (const char* k : {"attention_bias", "mlp_bias"})
      if (j.value(k, false))
        throw UserError("'" + path + "': \"" + k + "\" true is not implemented (no biases in the llama architecture)");
    if (j.contains("head_dim") && !j["head_dim"].is_null() && j["head_dim"] != c.dim / c.n_heads)
      throw UserError("'" + path + "': \"head_dim\" other than hidden_size / num_attention_heads is not implemented");
  } else {
    throw UserError("'" + path + "': model_type '" + type + "' is not supported (gpt2, llama, mistral)");
  }
  if (c.dim % c.n_heads != 0 || c.n_heads % c.kv_heads() != 0)
    throw UserError("'" + path + "': head counts do not divide the hidden size");
  return c;
}

// Tensors of HF checkpoints that are not parameters (GPT-2's causal-mask buffers, LLaMA's inv_freq).
bool is_buffer(const std::string& name) {
  for (const char* s : {".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"})
    if (name.size() >= std::strlen(s) && name.compare(name.size() - std::strlen(s), std::strlen(s), s) == 0)
      return true;
  return false;
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

bool is_hf_spec(const std::string& model) { return model.rfind("hf:", 0) == 0; }

std::string hf_config_path(const std::string& spec) {
  const std::string dir = spec.substr(3);
  if (dir.empty()) throw UserError(param("model") + " 'hf:': give the checkpoint folder, as hf:DIR");
  const std::string path = dir + "/config.json";
  if (!exists(path)) throw UserError(param("model") + " '" + spec + "': no config.json in '" + dir + "'");
  return path;
}

ModelConfig read_hf_config(const std::string& spec) {
  const std::string path = hf_config_path(spec);
  return config_from_json(read_json_file(path, param("model") + " hf:" + spec.substr(3) + ":"), path);
}

HfCheckpoint read_hf_checkpoint(const std::string& spec) {
  HfCheckpoint ck;
  ck.dir = spec.substr(3);
  ck.config = read_hf_config(spec);

  // The files: one model.safetensors, or the shards of model.safetensors.index.json.
  std::map<std::string, std::string> file_of;  // HF name -> file
  std::vector<std::string> files;
  const std::string single = ck.dir + "/model.safetensors", index = ck.dir + "/model.safetensors.index.json";
  if (exists(index)) {
    const json j = read_json_file(index, param("model") + " hf:" + ck.dir + ":");
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw UserError("'" + index + "': missing object \"weight_map\"");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string() || it.value().get<std::string>().find('/') != std::string::npos)
        throw UserError("'" + index + "': weight_map entry '" + it.key() + "' must name a file in the folder");
      file_of[it.key()] = ck.dir + "/" + it.value().get<std::string>();
    }
  } else if (!exists(single)) {
    throw UserError(param("model") + " '" + spec + "': no model.safetensors or model.safetensors.index.json in '" +
                    ck.dir + "'");
  }
  std::map<std::string, std::unique_ptr<SafetensorsFile>> open;
  auto file_for = [&](const std::string& path) -> SafetensorsFile& {
    auto& f = open[path];
    if (!f) f = std::make_unique<SafetensorsFile>(path, param("model") + " '" + spec + "'");
    return *f;
  };
  // Find a tensor by HF name; checkpoints saved from GPT2Model (no LM head) drop the "transformer." prefix.
  std::set<std::string> used;
  auto fetch = [&](const std::string& hf) -> torch::Tensor {
    for (const std::string& name : {hf, hf.rfind("transformer.", 0) == 0 ? hf.substr(12) : std::string()}) {
      if (name.empty()) continue;
      const std::string path = file_of.empty() ? single : (file_of.count(name) ? file_of[name] : "");
      if (path.empty()) continue;
      auto& f = file_for(path);
      if (!f.has(name)) {
        if (!file_of.empty()) throw UserError("'" + path + "': no tensor '" + name + "' (the index lists it there)");
        continue;
      }
      used.insert(path + "\n" + name);
      auto t = f.tensor(name);
      if (!t.is_floating_point())
        throw UserError("'" + path + "': tensor '" + name + "' is not floating point (" + f.entry(name).dtype + ")");
      return t;
    }
    throw UserError(param("model") + " '" + spec + "': the checkpoint has no tensor '" + hf + "'");
  };
  for (const auto& m : mappings(ck.config)) {
    auto t = fetch(m.hf);
    if (m.transpose) {
      if (t.dim() != 2) throw UserError(param("model") + " '" + spec + "': '" + m.hf + "' is not a matrix");
      t = t.t();
    }
    if (m.parts > 0) {
      if (t.size(0) % m.parts != 0)
        throw UserError(param("model") + " '" + spec + "': '" + m.hf + "' does not split into q, k, v");
      const int64_t rows = t.size(0) / m.parts;
      t = t.narrow(0, m.part * rows, rows);
    }
    ck.params.emplace_back(m.ours, t.contiguous().clone());
  }
  // Every stored tensor must have been used (or be a known buffer, or the tied head).
  for (const auto& [path, f] : open)
    for (const auto& e : f->entries())
      if (!used.count(path + "\n" + e.name) && !is_buffer(e.name) && !(ck.config.tied && e.name == "lm_head.weight"))
        throw UserError("'" + path + "': tensor '" + e.name + "' has no place in the built-in " + ck.config.family +
                        " architecture");
  return ck;
}

void load_hf_params(Network& net, const HfCheckpoint& ck) {
  std::map<std::string, torch::Tensor> by_name(ck.params.begin(), ck.params.end());
  torch::NoGradGuard g;
  for (auto& [name, t] : net.named_parameters()) {
    auto it = by_name.find(name);
    if (it == by_name.end())
      throw UserError(param("model") + " 'hf:" + ck.dir + "': nothing maps to parameter '" + name + "'");
    if (it->second.sizes() != t.sizes()) {
      std::ostringstream s;
      s << " 'hf:" << ck.dir << "': parameter '" << name << "' is " << it->second.sizes() << " in the checkpoint, "
        << t.sizes() << " in the model built from config.json";
      throw UserError(param("model") + s.str());
    }
    t.copy_(it->second.to(t.scalar_type()));
  }
}

void export_hf(const Network& net, const std::string& dir) {
  const ModelInfo& info = net.info();
  if (info.family != "gpt2" && info.family != "llama")
    throw UserError(param("export_hf") + ": model '" + info.name + "' is not a gpt2 or llama built-in model");
  std::map<std::string, torch::Tensor> ours;
  for (const auto& [name, t] : net.named_parameters()) ours[name] = t.detach().to(torch::kFloat32);
  ModelConfig c;
  c.family = info.family;
  c.n_layer = info.n_layer;
  c.tied = info.tied;
  NamedTensors out;
  std::map<std::string, std::vector<torch::Tensor>> fused;  // c_attn: q, k, v in order
  for (const auto& m : mappings(c)) {
    auto t = ours.at(m.ours);
    if (m.parts > 0) {
      fused[m.hf].push_back(t);
      if (static_cast<int64_t>(fused[m.hf].size()) < m.parts) continue;
      t = torch::cat(fused[m.hf], 0);
    }
    out.emplace_back(m.hf, m.transpose ? t.t().contiguous() : t.contiguous());
  }
  json cfg;
  if (c.family == "gpt2") {
    cfg = {{"model_type", "gpt2"},
           {"architectures", {"GPT2LMHeadModel"}},
           {"n_embd", info.dim},
           {"n_head", info.n_heads},
           {"n_layer", info.n_layer},
           {"vocab_size", info.vocab},
           {"n_positions", info.seq_len},
           {"n_inner", ours.at("h.0.mlp.fc_in.weight").size(0)},
           {"layer_norm_epsilon", 1e-5},
           {"activation_function", "gelu_new"},
           {"tie_word_embeddings", info.tied}};
  } else {
    cfg = {{"model_type", "llama"},
           {"architectures", {"LlamaForCausalLM"}},
           {"hidden_size", info.dim},
           {"num_attention_heads", info.n_heads},
           {"num_key_value_heads", info.n_kv_heads},
           {"num_hidden_layers", info.n_layer},
           {"vocab_size", info.vocab},
           {"max_position_embeddings", info.seq_len},
           {"intermediate_size", ours.at("layers.0.mlp.gate_proj.weight").size(0)},
           {"rms_norm_eps", 1e-6},
           {"rope_theta", 10000.0},
           {"hidden_act", "silu"},
           {"tie_word_embeddings", info.tied}};
  }
  cfg["torch_dtype"] = "float32";
  ::mkdir(dir.c_str(), 0755);
  write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}});
  write_text_atomic(dir + "/config.json", cfg.dump(2) + "\n");
}

}  // namespace bs
