// Partition helpers.
#include "partition.h"

#include "errors.h"

namespace bs {

std::string to_string(Granularity g) {
  switch (g) {
    case Granularity::Whole: return "whole";
    case Granularity::PerHead: return "per-head";
    case Granularity::PerRow: return "per-row";
    case Granularity::PerElement: return "per-element";
  }
  return "whole";
}

Granularity granularity_from_string(const std::string& s, const std::string& where) {
  for (Granularity g : {Granularity::Whole, Granularity::PerHead, Granularity::PerRow, Granularity::PerElement})
    if (to_string(g) == s) return g;
  throw UserError(where + ": unknown granularity '" + s + "' (whole, per-head, per-row or per-element)");
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
    case Granularity::Whole: b.block_size = numel; break;
    case Granularity::PerElement: b.block_size = 1; break;
    case Granularity::PerRow:
      if (e.shape.size() < 2) throw UserError("parameter '" + e.name + "': per-row blocks need a matrix");
      b.block_size = numel / e.shape[0];
      break;
    case Granularity::PerHead:
      if (head_numel <= 0 || numel % head_numel != 0)
        throw UserError("parameter '" + e.name + "': " + std::to_string(numel) +
                        " elements do not split into heads of " + std::to_string(head_numel) +
                        " (check --dim / --n-heads)");
      b.block_size = head_numel;
      break;
  }
  b.n_blocks = numel / std::max<int64_t>(b.block_size, 1);
  return b;
}

}  // namespace bs
