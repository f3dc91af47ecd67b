// Rotary position embedding as one autograd Function. RoPE rotates each pair (x_j, x_{j+h}) of a
// head's vector at position t by the angle theta(t, j): a linear map whose adjoint is the rotation
// back, so its gradient, its products' passes and every higher derivative are the same fused loop
// with the sign flipped (LibTorch's composite runs a multiplication, a concatenation, a negation
// and an addition per pass, each with its own double backward).
#include "curvature_ops.h"
#include "curvature_ops_detail.h"
#include "row_kernels.h"

#include <array>

namespace bs::ops {

namespace {
using namespace detail;

// The rotation on CPU arrays without a copy where x is a dense 4-d array with contiguous rows (the
// [B, H, T, d] heads of [B, T, H, d] projections, their gradients likewise): y takes x's layout, so
// that the models' transposes and flattening around it stay views.
Tensor rotate(const Tensor& x, const Tensor& c, const Tensor& s, double sigma) {
  if (off_rows(x)) {  // batched products or another device: the same map in LibTorch's ops
    const int64_t h = c.size(1);
    const auto x1 = x.narrow(-1, 0, h), x2 = x.narrow(-1, h, h);
    return torch::cat({x1 * c - sigma * x2 * s, x2 * c + sigma * x1 * s}, -1);
  }
  const bool as_it_lies = x.dim() == 4 && x.stride(3) == 1 && x.is_non_overlapping_and_dense();
  const auto x4 = as_it_lies ? x : x.contiguous().view({1, -1, x.size(-2), x.size(-1)});
  auto y = torch::empty_like(x4);  // x4's strides (a dense tensor's are kept)
  const std::array<int64_t, 4> n = {x4.size(0), x4.size(1), x4.size(2), x4.size(3)},
                               st = {x4.stride(0), x4.stride(1), x4.stride(2), x4.stride(3)};
  TORCH_CHECK(y.strides() == x4.strides(), "rope: the result's layout differs from its input's");
  AT_DISPATCH_FLOATING_TYPES(x4.scalar_type(), "rope_rows", [&] {
    rope_rows(x4.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), static_cast<scalar_t>(sigma),
              y.data_ptr<scalar_t>(), n, st);
  });
  return as_it_lies ? y : y.view(x.sizes());
}

// The rotation (sigma = 1) or its adjoint (sigma = -1); the backward is the other one.
struct Rope : torch::autograd::Function<Rope> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& c, const Tensor& s, double sigma) {
    ctx->saved_data["c"] = c;
    ctx->saved_data["s"] = s;
    ctx->saved_data["sigma"] = sigma;
    return rotate(x, c, s, sigma);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto c = ctx->saved_data["c"].toTensor(), s = ctx->saved_data["s"].toTensor();
    const double back = -ctx->saved_data["sigma"].toDouble();
    const auto dx = torch::GradMode::is_enabled() ? Rope::apply(grad[0], c, s, back) : rotate(grad[0], c, s, back);
    return {dx, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  TORCH_CHECK(x.dim() >= 2 && cos.dim() == 2 && cos.sizes() == sin.sizes() && x.size(-2) == cos.size(0) &&
                  x.size(-1) == 2 * cos.size(1),
              "rope: x [..., T, 2h] with cos, sin [T, h], got ", x.sizes(), " and ", cos.sizes());
  const auto c = cos.to(x.scalar_type()).contiguous(), s = sin.to(x.scalar_type()).contiguous();
  if (recorded(x)) return Rope::apply(x, c, s, 1.0);
  if (!torch::GradMode::is_enabled() || !x.requires_grad()) return rotate(x, c, s, 1.0);
  // LibTorch's composite (Hugging Face's rotate_half form): the tests' oracle.
  const int64_t h = x.size(-1) / 2;
  const auto rotated = torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
  return x * torch::cat({c, c}, -1) + rotated * torch::cat({s, s}, -1);
}

}  // namespace bs::ops
