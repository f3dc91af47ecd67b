// Partition / ParamBlock: how each parameter tensor is cut into blocks that share one statistic
// (Adam-mini's second moment, a learning rate). Diagnostics, partitioners and optimizers share it;
// adam_mini.json is a serialized Partition.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "param_table.h"

namespace bs {

// Sliced: a fused q/k/v weight cut slice by slice (ParamBlock::regions), each slice at its own kind's
// granularity, as if q, k and v were separate tensors.
enum class Granularity { Whole, PerHead, PerRow, PerElement, Sliced };
std::string to_string(Granularity g);
Granularity granularity_from_string(const std::string& s, const std::string& where);  // UserError naming `where`

// `count` blocks of one slice of a fused weight: block b is `runs` runs of `run` contiguous elements,
// run r starting at offset + b * step + r * stride (row-major flat indices). A slice along rows of a
// [3d, in] weight has contiguous blocks (runs = 1); along columns of a Conv1D [in, 3d] weight a head
// is `in` runs of head_dim elements, an output unit `in` runs of 1.
struct BlockRegion {
  Slice slice;                                   // label q/k/v, kind, dim, begin, length
  Granularity granularity = Granularity::Whole;  // per-head (q, k) or per-row: one block per output unit (v)
  int64_t offset = 0, run = 0, runs = 1, stride = 0, count = 0, step = 0;
  int64_t block_numel() const { return run * runs; }
};

struct ParamBlock {
  std::string name;
  std::vector<int64_t> shape;
  BlockKind kind = BlockKind::Other;
  Granularity granularity = Granularity::Whole;
  int64_t block_size = 0;  // elements per block (contiguous in row-major order); 0 when Sliced
  int64_t n_blocks = 0;
  bool weight_decay = true;
  std::vector<BlockRegion> regions;  // Sliced only: every slice's blocks, in slice order
};

struct Partition {
  std::vector<ParamBlock> params;  // in ParamTable order
  int64_t state_elements() const;  // Adam-mini: full m + one v per block
};

// Blocks of `granularity` for a tensor of `shape`; head_numel is the elements per head (per-head only).
ParamBlock make_block(const ParamEntry& e, Granularity g, int64_t head_numel);
// A fused q/k/v weight (e.slices non-empty) cut per slice: q and k per head of `head_dim` output units,
// v per output unit. UserError when a slice does not split into heads.
ParamBlock make_sliced_block(const ParamEntry& e, int64_t head_dim);
// Each element's block index (int64, the tensor's shape): the layout every partition describes.
torch::Tensor block_ids(const ParamBlock& b);

}  // namespace bs
