// SwiGLU as an autograd Function whose backward, when it is itself being recorded (create_graph=true:
// building a gradient graph for Hessian-vector products), precomputes what the second derivative needs.
#include "curvature_ops.h"
#include "curvature_ops_detail.h"
#include "row_kernels.h"

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

// SwiGLU y = f(g) u, f = SiLU: dg = dy u f'(g), du = dy f(g). For cotangents (Ag, Au) of (dg, du):
//   d/d(dy) = Ag u f' + Au f,   d/du = Ag dy f',   d/dg = Ag dy u f'' + Au dy f'.
// The constants u f', f, dy f', dy u f'' are kept from the graph's construction; a product's pass is
// one loop. With grad mode on (third derivatives) the same formulas run in LibTorch's ops.
template <class T>
void swiglu_second_order(const T* Ag, const T* Au, const T* uf1, const T* f, const T* dyf1, const T* dyuf2, T* gdy,
                         T* gu, T* gg, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    gdy[j] = Ag[j] * uf1[j] + Au[j] * f[j];
    gu[j] = Ag[j] * dyf1[j];
    gg[j] = Ag[j] * dyuf2[j] + Au[j] * dyf1[j];
  }
}

// (dg, du) = (dy uf1, dy f): the forward node's backward while products run.
template <class T>
void swiglu_first_order(const T* dy, const T* uf1, const T* f, T* dg, T* du, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    dg[j] = dy[j] * uf1[j];
    du[j] = dy[j] * f[j];
  }
}

// (dg, du) as a Function of (dy, g, u), recorded while a gradient graph is built.
struct SwigluBackward : torch::autograd::Function<SwigluBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& dy, const Tensor& g, const Tensor& u,
                               const Tensor& f, const Tensor& uf1, const Tensor& d1, const Tensor& d2) {
    ctx->save_for_backward({dy, g, u});
    const auto dyc = dy.contiguous();
    keep(ctx, {{"uf1", uf1}, {"f", f}, {"dyf1", dyc * d1}, {"dyuf2", dyc * u * d2}});
    return {SiluSpec::backward(dy * u, g), dy * f};  // LibTorch's gradient of silu(g) * u
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto &Ag = grad[0], &Au = grad[1];
    if (generic({Ag, Au})) {
      const auto saved = ctx->get_saved_variables();
      const auto &dy = saved[0], &g = saved[1], &u = saved[2];
      const auto [d1, d2] = SiluSpec::derivatives(g);
      return {Ag * u * d1 + Au * SiluSpec::value(g),
              Ag * dy * u * d2 + Au * dy * d1,
              Ag * dy * d1,
              Tensor(),
              Tensor(),
              Tensor(),
              Tensor()};
    }
    auto c = [&](const char* name) { return kept(ctx, name); };
    const auto Agc = Ag.contiguous(), Auc = Au.contiguous();
    auto gdy = torch::empty_like(Agc), gu = torch::empty_like(Agc), gg = torch::empty_like(Agc);
    AT_DISPATCH_FLOATING_TYPES(Agc.scalar_type(), "swiglu_second_order", [&] {
      swiglu_second_order<scalar_t>(Agc.data_ptr<scalar_t>(), Auc.data_ptr<scalar_t>(), c("uf1").data_ptr<scalar_t>(),
                                    c("f").data_ptr<scalar_t>(), c("dyf1").data_ptr<scalar_t>(),
                                    c("dyuf2").data_ptr<scalar_t>(), gdy.data_ptr<scalar_t>(), gu.data_ptr<scalar_t>(),
                                    gg.data_ptr<scalar_t>(), Agc.numel());
    });
    return {gdy, gg, gu, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// silu(g) u: one pass (swiglu_rows) on float arrays.
Tensor swiglu_value(const Tensor& g, const Tensor& u) {
  if (!float_rows({g, u}) || g.sizes() != u.sizes()) return SiluSpec::value(g) * u;
  const auto gc = g.contiguous(), uc = u.contiguous();
  auto y = torch::empty_like(gc);
  swiglu_rows(gc.data_ptr<float>(), uc.data_ptr<float>(), y.data_ptr<float>(), y.numel());
  return y;
}

struct Swiglu : torch::autograd::Function<Swiglu> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& u) {
    ctx->save_for_backward({g, u});
    return swiglu_value(g, u);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    if (torch::GradMode::is_enabled()) {
      const auto [d1, d2] = detail::constant_derivatives<SiluSpec>(g);
      Tensor f, uf1;
      {
        torch::NoGradGuard constants;
        f = SiluSpec::value(g);
        uf1 = u * d1;
      }
      keep(ctx, {{"f", f}, {"uf1", uf1}});  // later products pass back through here: one loop
      return SwigluBackward::apply(grad[0], g, u, kept(ctx, "f"), kept(ctx, "uf1"), d1, d2);
    }
    const auto it = ctx->saved_data.find("f");
    if (it == ctx->saved_data.end()) {  // a training step's backward
      if (!float_rows({grad[0], g, u})) return {SiluSpec::backward(grad[0] * u, g), grad[0] * SiluSpec::value(g)};
      const auto dy = grad[0].contiguous(), gc = g.contiguous(), uc = u.contiguous();
      auto dg = torch::empty_like(gc), du = torch::empty_like(gc);
      swiglu_backward_rows(dy.data_ptr<float>(), gc.data_ptr<float>(), uc.data_ptr<float>(), dg.data_ptr<float>(),
                           du.data_ptr<float>(), dg.numel());
      return {dg, du};
    }
    const auto f = it->second.toTensor(), uf1 = kept(ctx, "uf1");
    if (off_rows(grad[0])) return {(grad[0] * uf1).view(g.sizes()), (grad[0] * f).view(u.sizes())};
    const auto dy = grad[0].contiguous();
    auto dg = torch::empty_like(dy), du = torch::empty_like(dy);
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "swiglu_first_order", [&] {
      swiglu_first_order<scalar_t>(dy.data_ptr<scalar_t>(), uf1.data_ptr<scalar_t>(), f.data_ptr<scalar_t>(),
                                   dg.data_ptr<scalar_t>(), du.data_ptr<scalar_t>(), dy.numel());
    });
    return {dg.view(g.sizes()), du.view(u.sizes())};
  }
};

}  // namespace

torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u) {
  if ((recorded(g) || recorded(u)) && g.sizes() == u.sizes()) return Swiglu::apply(g, u);
  return swiglu_value(g, u);
}

}  // namespace bs::ops
