// Sizes of a built-in model; presets fill it and `--set key=value` overrides single fields.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace bs {

struct ModelConfig {
  std::string family;  // gpt2 | llama | mlp | cnn
  int64_t n_layer = 2, dim = 64, n_heads = 4, n_kv_heads = 0, vocab = 256, seq_len = 64, ffn = 0;
  bool tied = true;
  int64_t in_features = 784, n_classes = 10, hidden = 128;  // mlp / cnn
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t head_dim() const { return dim / n_heads; }
  // The MLP's hidden size: `ffn` when set, else the family's rule (GPT-2: 4 dim; LLaMA: 2/3 of 4 dim,
  // rounded up to a multiple of 8).
  int64_t ffn_hidden() const {
    if (ffn > 0) return ffn;
    return family == "llama" ? ((8 * dim / 3 + 7) / 8) * 8 : 4 * dim;
  }
  // The MLP's hidden widths, one per layer: `hidden`, then halving each layer, never below 8.
  std::vector<int64_t> mlp_widths() const {
    std::vector<int64_t> w;
    for (int64_t i = 0, width = hidden; i < n_layer; ++i, width = std::max<int64_t>(width / 2, 8)) w.push_back(width);
    return w;
  }
  bool language_model() const { return family == "gpt2" || family == "llama"; }  // takes tokens, vocab, seq_len
};

}  // namespace bs
