// Hutchinson's trace estimator (Hutchinson 1990) with Rademacher probes: tr(H) = E[z^T H z]. Every
// block's trace comes from the same products, z_b . (Hz)_b, so all block traces cost one global trace.
#pragma once
#include "hvp_operator.h"

namespace bs {

struct TraceResult {
  double trace = 0, stderr_ = 0;              // global estimate and its standard error
  std::vector<double> block_trace, block_stderr;  // per parameter tensor, table order
  int64_t n_products = 0;
};

TraceResult hutchinson(const LinearOp& op, const ParamTable& table, int64_t probes, uint64_t seed,
                       torch::Dtype dtype);

}  // namespace bs
