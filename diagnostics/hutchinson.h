// Hutchinson's trace estimator (Hutchinson 1990) with Rademacher probes: tr(H) = E[z^T H z]. Every
// block's trace comes from the same products, z_b . (Hz)_b, so all block traces cost one global trace.
// Hutch++ (Meyer, Musco, Musco, Woodruff 2021) spends a third of its products on a sketch Q of H's
// range and takes the trace of H on it exactly: when a few eigenvalues dominate, as in a network's
// Hessian, its error is far below Hutchinson's for the same number of products.
#pragma once
#include "hvp_operator.h"

namespace bs {

struct TraceResult {
  double trace = 0, std_error = 0;                // global estimate and its standard error
  std::vector<double> block_trace, block_stderr;  // per ParamTable::blocks() entry, in order
  int64_t n_products = 0;
  std::string estimator;  // "Hutchinson" or "Hutch++"
};

TraceResult hutchinson(const LinearOp& op, const ParamTable& table, int64_t probes, uint64_t seed, torch::Dtype dtype);

// Hutch++ with `products` products (a multiple of 3, at least 6): k = products/3 for the sketch
// Y = H S (S Rademacher), k for H Q (Q an orthonormal basis of Y), k for H W, W = (I - Q Q^T) G (G
// Rademacher). Per block b (P_b its coordinates, P = Q Q^T), tr(H_bb) = tr(P_b H P) + tr(P_b H (I - P))
// = sum_i (q_i)_b . (H q_i)_b + E[(w)_b . (H w)_b], since tr((I - P) P_b H (I - P)) = tr(P_b H (I - P));
// their sum over blocks is Hutch++'s estimate tr(Q^T H Q) + mean_j w_j^T H w_j. Standard errors are
// the residual part's (the sketched part is exact). Holds 3k vectors of the model's size in float64.
TraceResult hutch_plus_plus(const LinearOp& op, const ParamTable& table, int64_t products, uint64_t seed,
                            torch::Dtype dtype);

}  // namespace bs
