// ParamTable and the name -> BlockKind rules (substring rules in the spirit of Adam-mini v1.1.1 and the
// Sharpness Disparity code's grouping; see ALGORITHMS.md 1.2 and 2.4).
#include "param_table.h"

#include <algorithm>

#include "errors.h"

namespace bs {

const std::vector<BlockKind>& all_block_kinds() {
  static const std::vector<BlockKind> kinds = {BlockKind::Emb,  BlockKind::QK,   BlockKind::VO,   BlockKind::FFN,
                                               BlockKind::Norm, BlockKind::Head, BlockKind::Bias, BlockKind::Other};
  return kinds;
}

std::string to_string(BlockKind kind) {
  switch (kind) {
    case BlockKind::Emb:
      return "Emb";
    case BlockKind::QK:
      return "QK";
    case BlockKind::VO:
      return "VO";
    case BlockKind::FFN:
      return "FFN";
    case BlockKind::Norm:
      return "Norm";
    case BlockKind::Head:
      return "Head";
    case BlockKind::Bias:
      return "Bias";
    case BlockKind::Other:
      return "Other";
  }
  return "Other";
}

BlockKind block_kind_from_string(const std::string& s) {
  for (BlockKind k : all_block_kinds())
    if (to_string(k) == s) return k;
  throw UserError("unknown block kind '" + s + "' (expected Emb, QK, VO, FFN, Norm, Head, Bias or Other)");
}

const std::vector<KindRule>& kind_rules() {
  // Order matters: biases and norms first (every layer has them), then names whose context decides,
  // then the bare suffixes of each family. Families: GPT-2 as Hugging Face names it (wte, c_attn,
  // attn.c_proj, mlp.c_fc, mlp.c_proj, ln_*), LLaMA / Mistral / Qwen2 (embed_tokens, self_attn.*_proj,
  // mlp.{gate,up,down}_proj, *_layernorm, model.norm), nn.MultiheadAttention (in_proj_*, out_proj),
  // ViT / BERT (patch_embed, embeddings, attention.{query,key,value}, attention.output, intermediate).
  static const std::vector<KindRule> rules = {
      {{"bias"}, BlockKind::Bias, "every bias, whatever its layer"},
      {{"norm", "ln_", "layernorm"},
       BlockKind::Norm,
       "LayerNorm / RMSNorm weights (ln_1, input_layernorm, model.norm)"},
      {{"mlp.c_proj", "mlp.c_fc", "mlp.fc", "mlp.dense"},
       BlockKind::FFN,
       "GPT-2's MLP projections (context before the bare c_proj)"},
      {{"attn.c_proj", "attention.output", "out_proj", "attn.proj"}, BlockKind::VO, "attention output projections"},
      {{"c_attn", "in_proj_weight", "qkv_proj", "wqkv", "attn.qkv", "query_key_value"},
       BlockKind::QK,
       "fused q/k/v: profiled as slices [q] [k] (QK) and [v] (VO); per-slice rates; Adam-mini mode slices"},
      {{"patch_embed", "patch_embedding", "embeddings", "embed", "embd", "wte", "wpe"},
       BlockKind::Emb,
       "token, position and patch embeddings"},
      {{"q_proj", "k_proj", "wq.", "wk.", "query", "key"}, BlockKind::QK, "query and key projections"},
      {{"v_proj", "o_proj", "wv.", "wo.", "value", "c_proj"}, BlockKind::VO, "value and output projections"},
      {{"mlp", "feed_forward", "ffn", "fc", "linear1", "linear2", "gate_proj", "up_proj", "down_proj", "intermediate",
        "output.dense"},
       BlockKind::FFN,
       "MLP / feed-forward weights"},
      {{"lm_head", "output", "final_layer", "classifier", "head"}, BlockKind::Head, "output heads"},
  };
  return rules;
}

BlockKind infer_block_kind(const std::string& param_name) {
  std::string n = param_name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& rule : kind_rules())
    for (const auto& p : rule.patterns)
      if (n.find(p) != std::string::npos) return rule.kind;
  return BlockKind::Other;
}

std::vector<Slice> fused_qkv_slices(const std::string& param_name, const std::vector<int64_t>& shape) {
  std::string n = param_name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  bool fused = false;
  for (const char* p : {"c_attn.weight", "in_proj_weight", "qkv_proj.weight", "wqkv.weight", "attn.qkv.weight"})
    fused = fused || n.find(p) != std::string::npos;
  if (!fused || shape.size() != 2) return {};
  int64_t dim = -1;
  if (shape[0] == 3 * shape[1])
    dim = 0;
  else if (shape[1] == 3 * shape[0])
    dim = 1;
  if (dim < 0) return {};  // grouped-query fusions (q larger than k, v) are kept whole
  const int64_t len = shape[dim] / 3;
  return {
      {"q", dim, 0, len, BlockKind::QK}, {"k", dim, len, len, BlockKind::QK}, {"v", dim, 2 * len, len, BlockKind::VO}};
}

ParamTable::ParamTable(const std::vector<std::pair<std::string, torch::Tensor>>& named_params) {
  for (const auto& [name, t] : named_params) {
    ParamEntry e;
    e.name = name;
    e.shape = t.sizes().vec();
    e.numel = t.numel();
    e.offset = m_total;
    e.kind = infer_block_kind(name);
    e.slices = fused_qkv_slices(name, e.shape);
    m_total += e.numel;
    m_entries.push_back(std::move(e));
  }
  index_blocks();
}

void ParamTable::set_kind(size_t i, BlockKind kind) {
  m_entries.at(i).kind = kind;
  m_entries.at(i).slices.clear();
  index_blocks();
}

void ParamTable::index_blocks() {
  m_blocks.clear();
  for (size_t i = 0; i < m_entries.size(); ++i) {
    const auto& e = m_entries[i];
    if (e.slices.empty()) {
      m_blocks.push_back({i, -1, e.name, e.kind, e.numel});
      continue;
    }
    for (size_t j = 0; j < e.slices.size(); ++j) {
      const auto& sl = e.slices[j];
      m_blocks.push_back(
          {i, static_cast<int>(j), e.name + "[" + sl.label + "]", sl.kind, e.numel / e.shape[sl.dim] * sl.length});
    }
  }
}

torch::Tensor ParamTable::block_index(size_t b) const {
  const auto& blk = m_blocks.at(b);
  const auto& e = m_entries.at(blk.entry);
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  if (blk.slice < 0) return torch::arange(e.numel, opts);
  const auto& sl = e.slices.at(static_cast<size_t>(blk.slice));
  const int64_t rows = e.shape[0], cols = e.shape[1];
  if (sl.dim == 0) return torch::arange(sl.begin * cols, (sl.begin + sl.length) * cols, opts);
  return (torch::arange(rows, opts).unsqueeze(1) * cols +
          torch::arange(sl.begin, sl.begin + sl.length, opts).unsqueeze(0))
      .reshape({-1});
}

std::vector<double> ParamTable::block_sums(const torch::Tensor& x) const {
  std::vector<double> sums(m_blocks.size(), 0.0);
  for (size_t b = 0; b < m_blocks.size(); ++b) {
    const auto& e = m_entries[m_blocks[b].entry];
    auto part = x.narrow(0, e.offset, e.numel);
    sums[b] = (m_blocks[b].slice < 0 ? part : part.index_select(0, block_index(b))).sum().item<double>();
  }
  return sums;
}

size_t ParamTable::index_of(const std::string& name) const {
  for (size_t i = 0; i < m_entries.size(); ++i)
    if (m_entries[i].name == name) return i;
  std::string known;
  for (size_t i = 0; i < m_entries.size() && i < 8; ++i) known += (i ? ", " : "") + m_entries[i].name;
  if (m_entries.size() > 8) known += ", ...";
  throw UserError("unknown parameter name '" + name + "' (the model has: " + known + ")");
}

torch::Tensor ParamTable::flatten(const std::vector<torch::Tensor>& parts) const {
  std::vector<torch::Tensor> flat;
  flat.reserve(parts.size());
  for (const auto& p : parts) flat.push_back(p.reshape({-1}));
  return torch::cat(flat);
}

std::vector<torch::Tensor> ParamTable::unflatten(const torch::Tensor& flat) const {
  std::vector<torch::Tensor> out;
  out.reserve(m_entries.size());
  for (const auto& e : m_entries) out.push_back(flat.narrow(0, e.offset, e.numel).view(e.shape));
  return out;
}

}  // namespace bs
