// ParamTable: the model's named parameters in order, with shape, flat offset and BlockKind inferred
// from the name (Sharpness Disparity block kinds, Wang et al. 2025). The one vocabulary shared by
// diagnostics, partitioners and optimizers.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace bs {

enum class BlockKind { Emb, QK, VO, FFN, Norm, Head, Bias, Other };
const std::vector<BlockKind>& all_block_kinds();
std::string to_string(BlockKind kind);
BlockKind block_kind_from_string(const std::string& s);  // throws UserError naming s
BlockKind infer_block_kind(const std::string& param_name);

// The name -> kind rules as one table, tried in order on the lower-cased name; the first rule with a
// pattern that occurs in the name decides. Contextual patterns (mlp.c_proj) come before bare suffixes
// (c_proj), so a name's context wins. `blocksharp config rules` prints this table.
struct KindRule {
  std::vector<std::string> patterns;  // substrings, any of which matches
  BlockKind kind;
  std::string why;  // the convention the rule serves (shown by `config rules`)
};
const std::vector<KindRule>& kind_rules();

// One of the q, k, v parts of a fused projection weight: `length` rows (dim 0, nn.Linear's [3d, d]
// and in_proj_weight) or columns (dim 1, Hugging Face's Conv1D c_attn [d, 3d]) from `begin`.
struct Slice {
  std::string label;  // q, k or v
  int64_t dim = 0, begin = 0, length = 0;
  BlockKind kind = BlockKind::Other;  // QK for q and k, VO for v
};

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // into the flat vector of all parameters, in table order
  int64_t numel = 0;
  BlockKind kind = BlockKind::Other;
  std::vector<Slice> slices;  // a fused q/k/v weight's parts; empty for every other tensor
};

// What the diagnostics measure one number for: a whole tensor, or one slice of a fused one.
struct TableBlock {
  size_t entry = 0;
  int slice = -1;    // index into the entry's slices; -1: the whole tensor
  std::string name;  // the tensor's name, with "[q]" / "[k]" / "[v]" for a slice
  BlockKind kind = BlockKind::Other;
  int64_t numel = 0;
};

// The q/k/v slices of a weight whose name marks a fused projection (c_attn, in_proj_weight, qkv_proj,
// Wqkv, attn.qkv) and whose shape has one dimension three times the other; empty otherwise (GPT-NeoX's
// query_key_value interleaves heads and is kept whole).
std::vector<Slice> fused_qkv_slices(const std::string& name, const std::vector<int64_t>& shape);

class ParamTable {
 public:
  ParamTable() = default;
  explicit ParamTable(const std::vector<std::pair<std::string, torch::Tensor>>& named_params);

  const std::vector<ParamEntry>& entries() const { return m_entries; }
  const ParamEntry& at(size_t i) const { return m_entries.at(i); }
  size_t size() const { return m_entries.size(); }
  int64_t total_numel() const { return m_total; }
  // Index of a parameter by exact name; throws UserError listing close names when absent.
  size_t index_of(const std::string& name) const;
  void set_kind(size_t i, BlockKind kind);  // a user's override: the tensor becomes one block of that kind

  // Measured blocks in table order, a fused tensor's slices in place of the tensor.
  const std::vector<TableBlock>& blocks() const { return m_blocks; }
  // Coordinates of block b inside its tensor's flattened (row-major) values.
  torch::Tensor block_index(size_t b) const;
  // The sum of x (a flat vector over all parameters) over each block's coordinates.
  std::vector<double> block_sums(const torch::Tensor& x) const;

  // Flatten a list of per-parameter tensors (table order) into one vector, and back.
  torch::Tensor flatten(const std::vector<torch::Tensor>& parts) const;
  std::vector<torch::Tensor> unflatten(const torch::Tensor& flat) const;

 private:
  void index_blocks();
  std::vector<ParamEntry> m_entries;
  std::vector<TableBlock> m_blocks;
  int64_t m_total = 0;
};

}  // namespace bs
