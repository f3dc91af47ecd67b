// Hugging Face checkpoints in and out: `--model hf:DIR` reads DIR/config.json and DIR/model.safetensors
// (or the shards a model.safetensors.index.json lists) of a GPT-2 or LLaMA-family model into the
// built-in architecture of that family; `train --export-hf DIR` writes parameters back in HF's layout.
// GPT-2: transformer.* names, Conv1D weights stored [in, out] (transposed here), the fused c_attn split
// into q/k/v; LLaMA / Mistral: model.* names, the same rotate_half RoPE. Ties follow config.json.
#pragma once
#include <string>
#include <vector>

#include "../network.h"
#include "model_config.h"

namespace bs {

bool is_hf_spec(const std::string& model);  // "hf:DIR"

struct HfCheckpoint {
  std::string dir;
  ModelConfig config;   // family gpt2 or llama, sizes from config.json
  NamedTensors params;  // in the built-in architecture's names and layouts, dtype as stored
};

// "DIR/config.json" of an hf:DIR spec (UserError where it is not there) and the sizes it gives, validated:
// what a caller checks (memory) before the tensors are read.
std::string hf_config_path(const std::string& spec);
ModelConfig read_hf_config(const std::string& spec);
// Reads and validates the checkpoint; every error names the file and the tensor or key at fault.
HfCheckpoint read_hf_checkpoint(const std::string& spec);
// Copies the checkpoint into `net` (built from its config), converting to the network's dtype.
void load_hf_params(Network& net, const HfCheckpoint& ckpt);
// Writes DIR/config.json and DIR/model.safetensors (float32) of a gpt2 or llama built-in network.
void export_hf(const Network& net, const std::string& dir);

}  // namespace bs
