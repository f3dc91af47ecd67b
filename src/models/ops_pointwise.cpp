// SiLU as an autograd Function whose backward, when it is itself being recorded (create_graph=true:
// building a gradient graph for Hessian-vector products), precomputes what the second derivative needs:
//   y = f(x), dx = dy f'(x):   d(dx)/d(dy) = f'(x),  d(dx)/dx = dy f''(x).
#include "curvature_ops.h"
#include "curvature_ops_detail.h"

namespace bs::ops {

namespace {
using namespace detail;

struct SiluSpec {
  static Tensor value(const Tensor& x) { return at::silu(x); }
  static Tensor backward(const Tensor& dy, const Tensor& x) { return at::silu_backward(dy, x); }
  // f' = sig (1 + x (1 - sig)),  f'' = sig (1 - sig) (2 + x (1 - 2 sig)).
  static std::pair<Tensor, Tensor> derivatives(const Tensor& x) {
    const auto sig = torch::sigmoid(x);
    return {sig * (1 + x * (1 - sig)), sig * (1 - sig) * (2 + x * (1 - 2 * sig))};
  }
};

// dx = dy f'(x) as a Function of (dy, x), recorded while a gradient graph is built.
template <class Spec>
struct PointwiseBackward : torch::autograd::Function<PointwiseBackward<Spec>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& dy, const Tensor& x, const Tensor& d1,
                        const Tensor& d2) {
    ctx->save_for_backward({dy, x});
    ctx->saved_data["d1"] = d1;
    ctx->saved_data["dy_d2"] = dy * d2;
    return Spec::backward(dy, x);  // LibTorch's gradient, bit for bit
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto& u = grad[0];
    if (torch::GradMode::is_enabled()) {  // a third derivative: recompute from the saved inputs
      const auto saved = ctx->get_saved_variables();
      const auto [d1, d2] = Spec::derivatives(saved[1]);
      return {u * d1, u * saved[0] * d2, Tensor(), Tensor()};
    }
    return {u * ctx->saved_data["d1"].toTensor(), u * ctx->saved_data["dy_d2"].toTensor(), Tensor(), Tensor()};
  }
};

template <class Spec>
struct Pointwise : torch::autograd::Function<Pointwise<Spec>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return Spec::value(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto x = ctx->get_saved_variables()[0];
    if (torch::GradMode::is_enabled()) {
      const auto [d1, d2] = detail::constant_derivatives<Spec>(x);
      ctx->saved_data["d1"] = d1;  // later products pass back through here: one multiplication
      return {PointwiseBackward<Spec>::apply(grad[0], x, d1, d2)};
    }
    const auto it = ctx->saved_data.find("d1");
    if (it != ctx->saved_data.end()) return {grad[0] * it->second.toTensor()};
    return {Spec::backward(grad[0], x)};
  }
};

}  // namespace

torch::Tensor silu(const torch::Tensor& x) { return recorded(x) ? Pointwise<SiluSpec>::apply(x) : SiluSpec::value(x); }

}  // namespace bs::ops
