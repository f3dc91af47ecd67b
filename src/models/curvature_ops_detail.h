// What the curvature ops' files share (internal to src/models): whether an op records its own
// Function, the constants a recorded backward keeps, f', f'' as constants, and causal attention's score
// pass. See curvature_ops.h for what the ops are for.
#pragma once
#include <torch/torch.h>

#include <initializer_list>
#include <utility>

namespace bs::ops::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// True when x's op is being recorded for a gradient and NativeSecondOrder is not in force.
bool recorded(const torch::Tensor& x);

// True when t has no CPU array for a row kernel to read: it carries a vmap batch dimension (several
// products at once: HvpOperator::apply_block with a matrix of directions) or lives on another device
// (a CUDA tensor), where LibTorch's ops compute the same formulas.
bool off_rows(const Tensor& t);
// True where a pass must run as LibTorch's ops instead of a row kernel over raw arrays: grad mode is
// on (a third derivative) or a tensor is off_rows.
bool generic(std::initializer_list<Tensor> tensors);

// True where a training step's pass (no graph through it) runs as a float row kernel (row_kernels.h):
// not generic() and every tensor float32. Double keeps LibTorch's ops (the dense-Hessian oracles' match).
bool float_rows(std::initializer_list<Tensor> tensors);

// Constants a recorded backward keeps for the products' passes (contiguous: the row kernels read
// them as arrays), and reading one back.
inline void keep(AutogradContext* ctx, std::initializer_list<std::pair<const char*, Tensor>> constants) {
  for (const auto& [name, t] : constants) ctx->saved_data[name] = t.contiguous();
}
inline Tensor kept(AutogradContext* ctx, const char* name) { return ctx->saved_data[name].toTensor(); }

// Causal attention's scores in place, in one pass: scores[r, i, j] = scores * s for j <= i and -inf
// above (i = the row index mod T = scores.size(2): grouped heads stack their queries along the rows).
// The bits of `scores * s` then `masked_fill(triu(1), -inf)` (one rounding of x * float(s)), without the
// mask, the clone and the broadcast pass. scores: contiguous, 3-d, float or double, on the CPU.
void scale_and_mask_causal(const Tensor& scores, double s);

// f'(x), f''(x) of a pointwise Spec as constants (no graph): what a recorded backward precomputes
// for the products.
template <class Spec>
std::pair<torch::Tensor, torch::Tensor> constant_derivatives(const torch::Tensor& x) {
  torch::NoGradGuard constants;
  return Spec::derivatives(x);
}

}  // namespace bs::ops::detail
