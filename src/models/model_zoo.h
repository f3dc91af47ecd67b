// Built-in model presets (gpt2-*, llama-*, mlp-mnist, cnn-mnist), `--set key=value` overrides, and
// the one entry point that turns --model (preset name or TorchScript path) into a Network.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../network.h"
#include "model_config.h"

namespace bs {

std::vector<std::string> preset_names();
bool is_preset(const std::string& name);
std::string preset_list();  // "cnn-mnist, gpt2-124m, ...": what an error about --model lists
bool is_torchscript_path(const std::string& model);
// Preset with overrides applied. `vocab` (from the tokenizer) and `seq_len` (from --seq-len) fill the
// config unless a --set names them; 0 means "keep the preset's".
ModelConfig resolve_model_config(const std::string& preset, const std::vector<std::string>& sets, int64_t vocab,
                                 int64_t seq_len);
// The number of parameters build_network gives the config (closed form, as double: a mistyped size can
// make it overflow int64), so that a model too large is refused before any of it is allocated.
double parameter_count(const ModelConfig& cfg);
// Values that one forward and backward of a language model over batch x seq_len tokens certainly holds
// at once (0 for the vision models): the logits and their gradient, and per layer its input, the MLP's
// hidden activation and the attention probabilities (heads x seq_len per token). A floor, not the
// peak: training gpt2-tiny holds about 2.5x it, profile's graphs for Hessian-vector products 10x.
double activation_floor(const ModelConfig& cfg, int64_t batch, int64_t seq_len);
// Refuses (UserError, `what` naming the source of the sizes: "--set dim=65536", a config.json) a run
// whose parameters, their gradients and activation_floor, `bytes_per_value` each, exceed the memory
// available (available_memory_bytes(): MemAvailable, the cgroup's limit, BLOCKSHARP_MEMORY_BUDGET); a
// lower bound of what any command needs, checked before the model is built (batch 0: the parameters
// alone). What the floor misses the memory guard catches while the run goes (memory_guard.h).
void require_model_fits(const ModelConfig& cfg, int64_t bytes_per_value, int64_t batch, int64_t seq_len,
                        const std::string& what);
std::unique_ptr<Network> build_network(const std::string& preset, const ModelConfig& cfg, uint64_t seed);

}  // namespace bs
