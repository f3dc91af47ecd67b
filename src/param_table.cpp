// ParamTable and the name -> BlockKind rules (substring rules in the spirit of Adam-mini v1.1.1 and the
// Sharpness Disparity code's grouping; see ALGORITHMS.md 1.2 and 2.4).
#include "param_table.h"

#include <algorithm>

#include "errors.h"

namespace bs {

const std::vector<BlockKind>& all_block_kinds() {
  static const std::vector<BlockKind> kinds = {BlockKind::Emb,  BlockKind::QK,   BlockKind::VO,
                                               BlockKind::FFN,  BlockKind::Norm, BlockKind::Head,
                                               BlockKind::Bias, BlockKind::Other};
  return kinds;
}

std::string to_string(BlockKind kind) {
  switch (kind) {
    case BlockKind::Emb: return "Emb";
    case BlockKind::QK: return "QK";
    case BlockKind::VO: return "VO";
    case BlockKind::FFN: return "FFN";
    case BlockKind::Norm: return "Norm";
    case BlockKind::Head: return "Head";
    case BlockKind::Bias: return "Bias";
    case BlockKind::Other: return "Other";
  }
  return "Other";
}

BlockKind block_kind_from_string(const std::string& s) {
  for (BlockKind k : all_block_kinds())
    if (to_string(k) == s) return k;
  throw UserError("unknown block kind '" + s + "' (expected Emb, QK, VO, FFN, Norm, Head, Bias or Other)");
}

static bool has_any(const std::string& s, std::initializer_list<const char*> needles) {
  for (const char* n : needles)
    if (s.find(n) != std::string::npos) return true;
  return false;
}

BlockKind infer_block_kind(const std::string& param_name) {
  std::string n = param_name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (has_any(n, {"bias"})) return BlockKind::Bias;
  if (has_any(n, {"norm", "ln_"})) return BlockKind::Norm;
  if (has_any(n, {"q_proj", "k_proj", "wq.", "wk.", "query", "key"})) return BlockKind::QK;
  if (has_any(n, {"v_proj", "o_proj", "wv.", "wo.", "value", "attn.proj", "c_proj"})) return BlockKind::VO;
  if (has_any(n, {"mlp", "feed_forward", "fc"})) return BlockKind::FFN;
  if (has_any(n, {"embed", "embd", "wte", "wpe"})) return BlockKind::Emb;
  if (has_any(n, {"lm_head", "output", "final_layer"})) return BlockKind::Head;
  return BlockKind::Other;
}

ParamTable::ParamTable(const std::vector<std::pair<std::string, torch::Tensor>>& named_params) {
  for (const auto& [name, t] : named_params) {
    ParamEntry e;
    e.name = name;
    e.shape = t.sizes().vec();
    e.numel = t.numel();
    e.offset = m_total;
    e.kind = infer_block_kind(name);
    m_total += e.numel;
    m_entries.push_back(std::move(e));
  }
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
