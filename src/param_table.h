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

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // into the flat vector of all parameters, in table order
  int64_t numel = 0;
  BlockKind kind = BlockKind::Other;
};

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
  void set_kind(size_t i, BlockKind kind) { m_entries.at(i).kind = kind; }

  // Flatten a list of per-parameter tensors (table order) into one vector, and back.
  torch::Tensor flatten(const std::vector<torch::Tensor>& parts) const;
  std::vector<torch::Tensor> unflatten(const torch::Tensor& flat) const;

 private:
  std::vector<ParamEntry> m_entries;
  int64_t m_total = 0;
};

}  // namespace bs
