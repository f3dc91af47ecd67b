// Partition helpers.
#include "partition.h"

#include "errors.h"

namespace bs {

std::string to_string(Granularity g) {
  switch (g) {
    case Granularity::Whole:
      return "whole";
    case Granularity::PerHead:
      return "per-head";
    case Granularity::PerRow:
      return "per-row";
    case Granularity::PerElement:
      return "per-element";
    case Granularity::Sliced:
      return "sliced";
  }
  return "whole";
}

Granularity granularity_from_string(const std::string& s, const std::string& where) {
  for (Granularity g :
       {Granularity::Whole, Granularity::PerHead, Granularity::PerRow, Granularity::PerElement, Granularity::Sliced})
    if (to_string(g) == s) return g;
  throw UserError(where + ": unknown granularity '" + s + "' (whole, per-head, per-row, per-element or sliced)");
}

int64_t Partition::state_elements() const {
  int64_t n = 0;
  for (const auto& p : params) {
    int64_t numel = 1;
    for (int64_t d : p.shape) numel *= d;
    n += numel + p.n_blocks;
  }
  return n;
}

ParamBlock make_block(const ParamEntry& e, Granularity g, int64_t head_numel) {
  ParamBlock b;
  b.name = e.name;
  b.shape = e.shape;
  b.kind = e.kind;
  b.granularity = g;
  const int64_t numel = e.numel;
  switch (g) {
    case Granularity::Sliced:
      throw UserError("parameter '" + e.name + "': sliced blocks come from make_sliced_block");
    case Granularity::Whole:
      b.block_size = numel;
      break;
    case Granularity::PerElement:
      b.block_size = 1;
      break;
    case Granularity::PerRow:
      if (e.shape.size() < 2) throw UserError("parameter '" + e.name + "': per-row blocks need a matrix");
      b.block_size = numel / e.shape[0];
      break;
    case Granularity::PerHead:
      if (head_numel <= 0 || numel % head_numel != 0)
        throw UserError("parameter '" + e.name + "': " + std::to_string(numel) +
                        " elements do not split into heads of " + std::to_string(head_numel) + " (check " +
                        param("dim") + " / " + param("n_heads") + ")");
      b.block_size = head_numel;
      break;
  }
  b.n_blocks = numel / std::max<int64_t>(b.block_size, 1);
  return b;
}

ParamBlock make_sliced_block(const ParamEntry& e, int64_t head_dim) {
  if (e.slices.empty() || e.shape.size() != 2)
    throw UserError("parameter '" + e.name + "': only a fused q/k/v weight has slices");
  ParamBlock b;
  b.name = e.name;
  b.shape = e.shape;
  b.kind = e.kind;
  b.granularity = Granularity::Sliced;
  const int64_t rows = e.shape[0], cols = e.shape[1];
  for (const auto& sl : e.slices) {
    BlockRegion r;
    r.slice = sl;
    const bool heads = sl.kind == BlockKind::QK;
    r.granularity = heads ? Granularity::PerHead : Granularity::PerRow;
    const int64_t units = heads ? head_dim : 1;  // output units per block
    if (units <= 0 || sl.length % units != 0)
      throw UserError("parameter '" + e.name + "[" + sl.label + "]': " + std::to_string(sl.length) +
                      " output units do not split into heads of " + std::to_string(head_dim) + " (check " +
                      param("dim") + " / " + param("n_heads") + ")");
    r.count = sl.length / units;
    if (sl.dim == 0) {  // [3d, in]: an output unit is a row; a block is `units` whole rows
      r.offset = sl.begin * cols;
      r.run = units * cols;
      r.runs = 1;
      r.step = units * cols;
    } else {  // Conv1D [in, 3d]: an output unit is a column; a block is `units` columns of every row
      r.offset = sl.begin;
      r.run = units;
      r.runs = rows;
      r.stride = cols;
      r.step = units;
    }
    b.n_blocks += r.count;
    b.regions.push_back(r);
  }
  return b;
}

torch::Tensor block_ids(const ParamBlock& b) {
  int64_t numel = 1;
  for (int64_t d : b.shape) numel *= d;
  auto ids = torch::full({numel}, -1, torch::kInt64);
  int64_t* id = ids.data_ptr<int64_t>();
  if (b.regions.empty()) {
    for (int64_t k = 0; k < numel; ++k) id[k] = k / std::max<int64_t>(b.block_size, 1);
  } else {
    int64_t base = 0;
    for (const auto& r : b.regions) {
      for (int64_t blk = 0; blk < r.count; ++blk)
        for (int64_t q = 0; q < r.runs; ++q)
          for (int64_t k = 0; k < r.run; ++k) id[r.offset + blk * r.step + q * r.stride + k] = base + blk;
      base += r.count;
    }
  }
  return ids.view(b.shape);
}

}  // namespace bs
