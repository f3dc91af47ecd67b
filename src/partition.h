// Partition / ParamBlock: how each parameter tensor is cut into blocks that share one statistic
// (Adam-mini's second moment, a learning rate). Diagnostics, partitioners and optimizers share it;
// adam_mini.json is a serialized Partition.
#pragma once
#include <string>
#include <vector>

#include "param_table.h"

namespace bs {

enum class Granularity { Whole, PerHead, PerRow, PerElement };
std::string to_string(Granularity g);
Granularity granularity_from_string(const std::string& s, const std::string& where);  // UserError naming `where`

struct ParamBlock {
  std::string name;
  std::vector<int64_t> shape;
  BlockKind kind = BlockKind::Other;
  Granularity granularity = Granularity::Whole;
  int64_t block_size = 0;  // elements per block (contiguous in row-major order)
  int64_t n_blocks = 0;
  bool weight_decay = true;
};

struct Partition {
  std::vector<ParamBlock> params;  // in ParamTable order
  int64_t state_elements() const;  // Adam-mini: full m + one v per block
};

// Blocks of `granularity` for a tensor of `shape`; head_numel is the elements per head (per-head only).
ParamBlock make_block(const ParamEntry& e, Granularity g, int64_t head_numel);

}  // namespace bs
