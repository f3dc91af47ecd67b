// Linear and GPT-2's MLP (GELU between two linear layers) as autograd Functions whose backward, when
// it is itself being recorded (building a gradient graph for Hessian-vector products), precomputes
// what the second derivative needs and sums cotangents inside the matrix products.
#include "curvature_ops.h"
#include "curvature_ops_detail.h"
#include "gemm.h"
#include "row_kernels.h"

#include <cmath>

namespace bs::ops {

namespace {
using namespace detail;

struct GeluTanhSpec {
  static Tensor value(const Tensor& x) { return at::gelu(x, "tanh"); }
  static Tensor backward(const Tensor& dy, const Tensor& x) { return at::gelu_backward(dy, x, "tanh"); }
  // f'(x), f''(x) with u = k (x + c x^3), t = tanh(u): f' = (1+t)/2 + x (1-t^2) u'/2,
  // f'' = (1-t^2) (u' + x (u'' - 2 t u'^2) / 2).
  static std::pair<Tensor, Tensor> derivatives(const Tensor& x) {
    const double k = std::sqrt(2.0 / M_PI), c = 0.044715;
    const auto x2 = x * x;
    const auto t = torch::tanh(k * (x + c * x * x2));
    const auto du = k * (1 + 3 * c * x2);
    const auto s = 1 - t * t;
    return {0.5 * (1 + t) + 0.5 * x * s * du, s * (du + 0.5 * x * (6 * k * c * x - 2 * t * du * du))};
  }
};

// gelu(h) as a value no graph goes through: one exp per value for float arrays on the CPU
// (gelu_tanh_rows; a few ulps from LibTorch's tanh form, whose tanh costs five times as much here),
// LibTorch's gelu for double (the dense-Hessian oracles' exact match) and where generic() says so.
Tensor gelu_tanh_value(const Tensor& h) {
  if (!float_rows({h})) return GeluTanhSpec::value(h);
  const auto hc = h.contiguous();
  auto a = torch::empty_like(hc);
  gelu_tanh_rows(hc.data_ptr<float>(), a.data_ptr<float>(), hc.numel());
  return a;
}

// h = x W^T + b and a = gelu(h) (GPT-2's fc_in and its GELU), h for the backward. For float arrays the
// product runs without the bias and gelu_tanh_bias_rows adds it in the GELU's pass (instead of the
// bias copied into every row of h for the product to add to): h's bits are gemm::linear's where the
// product sums k in one run (K = 256: gpt2-small-cpu), a rounding apart where it adds blocks of k to h.
std::pair<Tensor, Tensor> linear_gelu(const Tensor& x, const Tensor& W, const Tensor& b) {
  if (!float_rows({x, W, b}) || b.dim() != 1 || !b.is_contiguous()) {
    auto h = gemm::linear(x, W, b);
    return {h, gelu_tanh_value(h)};
  }
  auto h = gemm::linear(x, W).contiguous();  // a fresh product: contiguous already
  auto a = torch::empty_like(h);
  const int64_t cols = h.size(-1);
  gelu_tanh_bias_rows(h.data_ptr<float>(), b.data_ptr<float>(), a.data_ptr<float>(), h.numel() / cols, cols);
  return {h, a};
}

// The gradient of y = x W^T + b: dx = dy W, dW = dy^T x, db = sum_rows dy (dy of any leading shape;
// db undefined without a bias).
variable_list linear_gradient(const Tensor& dy, const Tensor& x, const Tensor& W, bool bias = true) {
  const auto dy2 = dy.reshape({-1, W.size(0)});
  return {gemm::mm(dy2, W).view(x.sizes()), gemm::mm(dy2.t(), x.reshape({-1, W.size(1)})),
          bias ? dy2.sum(0) : Tensor()};
}

// Linear y = x W^T + b, gradient as above. For cotangents
// (A, Bw, Bb): d/d(dy) = A W^T + x Bw^T + Bb (one accumulating matrix product per term),
// d/dx = dy Bw, d/dW = dy^T A. Differentiable as written, so it also serves third derivatives.
struct LinearBackward : torch::autograd::Function<LinearBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& dy, const Tensor& x, const Tensor& W) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({dy, x, W});
    return linear_gradient(dy, x, W);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &dy = saved[0], &x = saved[1], &W = saved[2];
    const auto dy2 = dy.reshape({-1, W.size(0)}), x2 = x.reshape({-1, W.size(1)});
    const auto A = grad[0].defined() ? grad[0].reshape({-1, W.size(1)}) : Tensor();
    const auto &Bw = grad[1], &Bb = grad[2];
    // Any of the three may be undefined (a block product asks only for some tensors' cotangents).
    Tensor gdy;
    auto add_product = [&](const Tensor& a, const Tensor& b) {
      if (gdy.defined())
        gemm::addmm_(gdy, a, b);
      else
        gdy = Bb.defined() ? gemm::addmm(Bb, a, b) : gemm::mm(a, b);
    };
    if (A.defined()) add_product(A, W.t());
    if (Bw.defined()) add_product(x2, Bw.t());
    if (!gdy.defined() && Bb.defined()) gdy = Bb.expand(dy2.sizes()).contiguous();
    return {gdy.defined() ? gdy.view(dy.sizes()) : Tensor(),
            Bw.defined() ? gemm::mm(dy2, Bw).view(x.sizes()) : Tensor(), A.defined() ? gemm::mm(dy2.t(), A) : Tensor()};
  }
};

// A linear layer's (dx, dW) and, with a bias, db from dy: through LinearBackward while a gradient graph
// is built (grad mode on in backward), linear_gradient otherwise.
variable_list linear_layer_gradients(const Tensor& dy, const Tensor& x, const Tensor& W, bool bias) {
  auto g = torch::GradMode::is_enabled() ? LinearBackward::apply(dy, x, W) : linear_gradient(dy, x, W, bias);
  if (!bias) g.resize(2);  // (LinearBackward's db goes unused)
  return g;
}

struct Linear : torch::autograd::Function<Linear> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& W, const Tensor& b) {
    ctx->save_for_backward({x, W});
    return gemm::linear(x, W, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    return linear_layer_gradients(grad[0], saved[0], saved[1], /*bias=*/true);
  }
};

// y = x W^T (LLaMA's layers): a Function cannot take an undefined bias, so this is Linear without it.
struct LinearNoBias : torch::autograd::Function<LinearNoBias> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& W) {
    ctx->save_for_backward({x, W});
    return gemm::linear(x, W);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    return linear_layer_gradients(grad[0], saved[0], saved[1], /*bias=*/false);
  }
};

// res + (x W^T + b), a residual stream and a linear layer's output (b may be undefined): for float rows
// the product accumulates into rows of res + b (one pass, where gemm::linear copies the bias into every
// row anyway; a copy of res without a bias) instead of a product and then an addition that reads both
// again into a fresh result. A rounding apart from res + linear (res + b is rounded before the
// product's sum is added to it). Elsewhere (float64, grad mode on, batched, another device)
// res + gemm::linear.
Tensor linear_residual_value(const Tensor& res, const Tensor& x, const Tensor& W, const Tensor& b) {
  const bool bias_row = !b.defined() || (float_rows({b}) && b.dim() == 1 && b.is_contiguous());
  const bool rows = float_rows({res, x, W}) && bias_row && x.dim() >= 1 && res.dim() >= 1 &&
                    res.size(-1) == W.size(0) && x.size(-1) == W.size(1) &&
                    res.numel() / W.size(0) == x.numel() / W.size(1);
  if (!rows) return res + gemm::linear(x, W, b);
  const int64_t cols = W.size(0), n = res.numel() / cols;
  const auto x2 = x.reshape({-1, W.size(1)});
  if (!b.defined()) return gemm::addmm(res.reshape({n, cols}), x2, W.t()).view(res.sizes());  // into a copy of res
  const auto rc = res.contiguous();
  auto out = torch::empty_like(rc, at::MemoryFormat::Contiguous);
  add_row_vector_rows(rc.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>(), n, cols);
  auto out2 = out.view({n, cols});
  gemm::addmm_(out2, x2, W.t());
  return out;
}

// y = res + (x W^T + b) (GPT-2's and LLaMA's attention output and residual; kBias: with b): Linear's
// gradient, res's is y's.
template <bool kBias>
struct LinearResidual : torch::autograd::Function<LinearResidual<kBias>> {
  template <class... Bias>
  static Tensor forward(AutogradContext* ctx, const Tensor& res, const Tensor& x, const Tensor& W, const Bias&... b) {
    static_assert(sizeof...(Bias) == (kBias ? 1 : 0), "LinearResidual: one bias with kBias, none without");
    ctx->save_for_backward({x, W});
    return linear_residual_value(res, x, W, Tensor(b...));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    auto g = linear_layer_gradients(grad[0], saved[0], saved[1], kBias);
    g.insert(g.begin(), grad[0]);
    return g;
  }
};

// GELU feeding a Linear, y = a W^T + b, a = gelu(h) (GPT-2's MLP): one node, so that per product the
// cotangents of a never go through a separate addition. Gradient: da = dy W, dh = da f'(h),
// dW = dy^T a, db = sum_rows dy. For cotangents (Ah, Bw, Bb), with cda = Ah f'(h):
//   d/d(dy) = cda W^T + a Bw^T + Bb,   d/dW = dy^T cda,   d/dh = (dy Bw) f'(h) + Ah da f''(h).
template <class T>
void gelu_linear_second_order(const T* Ah, const T* d1, const T* da_d2, T* dyBw_to_gh, T* cda, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    cda[j] = Ah[j] * d1[j];
    dyBw_to_gh[j] = dyBw_to_gh[j] * d1[j] + Ah[j] * da_d2[j];
  }
}

std::array<Tensor, 3> gelu_linear_vjp(const Tensor& dy, const Tensor& W, const Tensor& a, const Tensor& d1,
                                      const Tensor& da_d2, const Tensor& Ah, const Tensor& Bw, const Tensor& Bb) {
  Tensor gh = gemm::mm(dy, Bw), cda;
  if (generic({Ah, Bw, Bb})) {
    cda = Ah * d1;
    gh = gh * d1 + Ah * da_d2;
  } else {
    cda = torch::empty_like(Ah);
    const auto Ahc = Ah.contiguous();
    AT_DISPATCH_FLOATING_TYPES(gh.scalar_type(), "gelu_linear_second_order", [&] {
      gelu_linear_second_order<scalar_t>(Ahc.data_ptr<scalar_t>(), d1.data_ptr<scalar_t>(), da_d2.data_ptr<scalar_t>(),
                                         gh.data_ptr<scalar_t>(), cda.data_ptr<scalar_t>(), gh.numel());
    });
  }
  auto gdy = gemm::addmm(Bb, cda, W.t());
  return {gemm::addmm_(gdy, a, Bw.t()), gemm::mm(dy.t(), cda), gh};
}

// dh = da f'(h) given a = gelu(h): gelu_tanh_backward_rows on CPU arrays, LibTorch's (differentiable)
// gelu_backward where generic() says so (grad mode on for third derivatives, batched, another device).
Tensor gelu_tanh_backward(const Tensor& da, const Tensor& h, const Tensor& a) {
  if (generic({da, h, a})) return GeluTanhSpec::backward(da, h);
  const auto dac = da.contiguous(), hc = h.contiguous(), ac = a.contiguous();
  auto dh = torch::empty_like(hc);
  AT_DISPATCH_FLOATING_TYPES(hc.scalar_type(), "gelu_tanh_backward_rows", [&] {
    gelu_tanh_backward_rows(dac.data_ptr<scalar_t>(), hc.data_ptr<scalar_t>(), ac.data_ptr<scalar_t>(),
                            dh.data_ptr<scalar_t>(), hc.numel());
  });
  return dh;
}

// The same for float arrays (float_rows) of rows [R, F], with dh's column sums (the gradient of the bias
// before the GELU) taken in the same pass: (dh, db). dh is the weight gradient's transposed operand
// next, so its rows are laid out as gemm::padded_rows says.
std::pair<Tensor, Tensor> gelu_tanh_backward_bias(const Tensor& da, const Tensor& h, const Tensor& a) {
  const auto dac = da.contiguous(), hc = h.contiguous(), ac = a.contiguous();
  const int64_t cols = hc.size(-1), rows = hc.numel() / cols;
  auto dh = gemm::padded_rows(rows, cols, hc.options());
  auto db = torch::empty({cols}, hc.options());
  gelu_tanh_backward_bias_rows(dac.data_ptr<float>(), hc.data_ptr<float>(), ac.data_ptr<float>(), dh.data_ptr<float>(),
                               dh.stride(0), db.data_ptr<float>(), rows, cols);
  return {dh, db};
}

// (dh, dW, db) as a Function of (dy, h, W), recorded while a gradient graph is built; d1, d2 are
// f'(h), f''(h) as [rows, D] constants.
struct GeluLinearBackward : torch::autograd::Function<GeluLinearBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& dy, const Tensor& h, const Tensor& W,
                               const Tensor& d1, const Tensor& d2) {
    ctx->save_for_backward({dy, h, W});
    const auto dy2 = dy.reshape({-1, W.size(0)}), h2 = h.reshape({-1, W.size(1)});
    const auto a = GeluTanhSpec::value(h2), da = gemm::mm(dy2, W);
    keep(ctx, {{"dy", dy2}, {"a", a}, {"d1", d1}, {"da_d2", da * d2}});
    return {GeluTanhSpec::backward(da, h2).view(h.sizes()), gemm::mm(dy2.t(), a), dy2.sum(0)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &dy = saved[0], &h = saved[1], &W = saved[2];
    const auto Ah = grad[0].reshape({-1, W.size(1)});
    std::array<Tensor, 3> g;
    if (torch::GradMode::is_enabled()) {  // a third derivative: the pieces recomputed differentiably
      const auto dy2 = dy.reshape({-1, W.size(0)}), h2 = h.reshape({-1, W.size(1)});
      const auto [d1, d2] = GeluTanhSpec::derivatives(h2);
      g = gelu_linear_vjp(dy2, W, GeluTanhSpec::value(h2), d1, gemm::mm(dy2, W) * d2, Ah, grad[1], grad[2]);
    } else {
      auto c = [&](const char* name) { return kept(ctx, name); };
      g = gelu_linear_vjp(c("dy"), W, c("a"), c("d1"), c("da_d2"), Ah, grad[1], grad[2]);
    }
    return {g[0].view(dy.sizes()), g[2].view(h.sizes()), g[1], Tensor(), Tensor()};
  }
};

// GPT-2's MLP, y = gelu(h) W2^T + b2, h = x W1^T + b1, as one node that also returns h: while
// products run, what flows to h from the gradient's pieces joins the product's own cotangent in one
// fused pass (dh = da f'(h) + gh) instead of a multiplication and an addition.
// With kResidual, a sixth input res and y = res + (gelu(h) W2^T + b2), the residual added where the bias
// is (linear_residual_value); res's gradient is y's.
template <bool kResidual>
struct GeluMlp : torch::autograd::Function<GeluMlp<kResidual>> {
  template <class... Res>
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& W1, const Tensor& b1,
                               const Tensor& W2, const Tensor& b2, const Res&... res) {
    static_assert(sizeof...(Res) == (kResidual ? 1 : 0), "GeluMlp: one residual with kResidual, none without");
    ctx->set_materialize_grads(false);
    const auto [h, a] = linear_gelu(x, W1, b1);
    ctx->save_for_backward({x, W1, W2, h});
    ctx->saved_data["a"] = a;
    if constexpr (kResidual) return {linear_residual_value(res..., a, W2, b2), h};
    return {gemm::linear(a, W2, b2), h};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto g = gradients(ctx, grad);
    if constexpr (kResidual) g.push_back(grad[0]);
    return g;
  }
  // (dx, dW1, db1, dW2, db2) from the gradients of (y, h).
  static variable_list gradients(AutogradContext* ctx, const variable_list& grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &W1 = saved[1], &W2 = saved[2], &h = saved[3];
    const auto gy = grad[0].defined() ? grad[0] : torch::zeros({h.numel() / W1.size(0), W2.size(0)}, h.options());
    if (torch::GradMode::is_enabled() && !grad[1].defined()) {  // building a gradient graph for products
      const auto [d1, d2] = detail::constant_derivatives<GeluTanhSpec>(h.reshape({-1, W1.size(0)}));
      ctx->saved_data["d1"] = d1;                              // later products pass back through here: one fused pass
      auto g2 = GeluLinearBackward::apply(gy, h, W2, d1, d2);  // (dh, dW2, db2)
      auto g1 = LinearBackward::apply(g2[0], x, W1);           // (dx, dW1, db1)
      return {g1[0], g1[1], g1[2], g2[1], g2[2]};
    }
    const auto h2 = h.reshape({-1, W1.size(0)});
    const auto a = torch::GradMode::is_enabled() ? GeluTanhSpec::value(h2)  // differentiable for third derivatives
                                                 : kept(ctx, "a").reshape({-1, W1.size(0)});
    auto g2 = linear_gradient(gy, a, W2);  // (da, dW2, db2)
    Tensor dh, db1, &da = g2[0];
    const auto it = ctx->saved_data.find("d1");
    if (!grad[1].defined() && it == ctx->saved_data.end() && float_rows({da, h2, a})) {  // a training step's
      std::tie(dh, db1) = gelu_tanh_backward_bias(da, h2, a);
    } else if (torch::GradMode::is_enabled() || it == ctx->saved_data.end()) {  // recorded, or h's gradient too
      dh = gelu_tanh_backward(da, h2, a);
      if (grad[1].defined()) dh = dh + grad[1].reshape(dh.sizes());
    } else {
      dh = grad[1].defined() ? torch::addcmul(grad[1].reshape(da.sizes()), da, it->second.toTensor())
                             : da.mul_(it->second.toTensor());
    }
    auto g1 = linear_gradient(dh, x, W1, /*bias=*/!db1.defined());
    return {g1[0], g1[1], db1.defined() ? db1 : g1[2], g2[1], g2[2]};
  }
};

// Matrices [R, c_i] joined along their columns: a view where they already lie side by side in one
// buffer (rows of sum c_i, each part at its columns: causal attention writes q, k, v's gradients so),
// torch::cat otherwise.
Tensor side_by_side(const std::vector<Tensor>& parts) {
  const auto& p0 = parts[0];
  int64_t width = 0;
  for (const auto& p : parts) width += p.defined() && p.dim() == 2 ? p.size(1) : 0;
  bool adjacent = true;
  int64_t at = 0;
  for (const auto& p : parts) {
    adjacent = adjacent && p.defined() && p.dim() == 2 && p.size(0) == p0.size(0) && p.stride(1) == 1 &&
               (p.size(0) <= 1 || p.stride(0) == width) && p.is_alias_of(p0) &&
               p.storage_offset() == p0.storage_offset() + at && p.scalar_type() == p0.scalar_type();
    at += p.defined() && p.dim() == 2 ? p.size(1) : 0;
  }
  if (adjacent) return p0.as_strided({p0.size(0), width}, {width, 1}, p0.storage_offset());
  return torch::cat(parts, 1);
}

// Several linear layers on one input, y_i = x W_i^T + b_i (GPT-2's q, k, v): one product against the
// weights stacked by rows, the outputs column slices of it. (LLaMA keeps its separate products: with
// the CLI's malloc settings, a llama-small-cpu attention block's forward and backward took 0.99-1.01
// of the separate products' time stacked and its gate/up MLP 1.02-1.10, against 0.97-0.99 for GPT-2's
// attention block; interleaved in one process.)
// A training step's backward stacks the outputs' gradients dY = [dy_1 ... dy_n] and takes dx = dY W
// (one product whose inner dimension is every output, no separate additions) and the stacked
// dW = dY^T x, whose row slices are the weights' gradients. While a gradient graph is built (grad mode
// on in backward), each layer's part goes through LinearBackward as the unfused layers do, so
// Hessian-vector products are unchanged in kind. The weights, then (kBias) as many biases, are the
// Function's inputs one by one: LibTorch 1.13's Functions take no gradient through a TensorList.
template <bool kBias>
struct StackedLinear : torch::autograd::Function<StackedLinear<kBias>> {
  template <class... Ts>
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Ts&... weights_then_biases) {
    const std::vector<Tensor> all = {weights_then_biases...};
    const size_t n = kBias ? all.size() / 2 : all.size();
    const std::vector<Tensor> Ws(all.begin(), all.begin() + n), bs(all.begin() + n, all.end());
    const auto W = torch::cat(Ws);
    const auto y = gemm::linear(x, W, kBias ? torch::cat(bs) : Tensor());
    std::vector<Tensor> saved = {x, W};
    saved.insert(saved.end(), Ws.begin(), Ws.end());
    ctx->save_for_backward(saved);
    variable_list out;
    int64_t at_col = 0;
    for (const auto& Wi : Ws) {
      out.push_back(y.narrow(-1, at_col, Wi.size(0)));
      at_col += Wi.size(0);
    }
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &W = saved[1];
    const std::vector<Tensor> Ws(saved.begin() + 2, saved.end());
    const size_t n = Ws.size();
    variable_list dx_dW_db(1 + n + (kBias ? n : 0));
    if (torch::GradMode::is_enabled()) {  // building a gradient graph: the layers' own backward each
      for (size_t i = 0; i < n; ++i) {
        auto g = LinearBackward::apply(grad[i], x, Ws[i]);
        dx_dW_db[0] = i == 0 ? g[0] : dx_dW_db[0] + g[0];
        dx_dW_db[1 + i] = g[1];
        if (kBias) dx_dW_db[1 + n + i] = g[2];
      }
      return dx_dW_db;
    }
    std::vector<Tensor> parts;
    for (size_t i = 0; i < n; ++i) parts.push_back(grad[i].reshape({-1, Ws[i].size(0)}));
    const auto g = linear_gradient(side_by_side(parts), x, W, kBias);  // (dx, stacked dW, stacked db)
    dx_dW_db[0] = g[0];
    int64_t at_row = 0;
    for (size_t i = 0; i < n; ++i) {
      dx_dW_db[1 + i] = g[1].narrow(0, at_row, Ws[i].size(0));
      if (kBias) dx_dW_db[1 + n + i] = g[2].narrow(0, at_row, Ws[i].size(0));
      at_row += Ws[i].size(0);
    }
    return dx_dW_db;
  }
};

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
  if (recorded(x)) return b.defined() ? Linear::apply(x, W, b) : LinearNoBias::apply(x, W);
  return at::linear(x, W, b);
}

std::vector<torch::Tensor> linears(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                                   const std::vector<torch::Tensor>& bs) {
  TORCH_CHECK(bs.empty() || bs.size() == Ws.size(), "linears: ", Ws.size(), " weights and ", bs.size(), " biases");
  if (recorded(x) && !off_rows(x)) {
    if (Ws.size() == 2 && bs.empty()) return StackedLinear<false>::apply(x, Ws[0], Ws[1]);
    if (Ws.size() == 3 && bs.empty()) return StackedLinear<false>::apply(x, Ws[0], Ws[1], Ws[2]);
    if (Ws.size() == 2 && !bs.empty()) return StackedLinear<true>::apply(x, Ws[0], Ws[1], bs[0], bs[1]);
    if (Ws.size() == 3 && !bs.empty()) return StackedLinear<true>::apply(x, Ws[0], Ws[1], Ws[2], bs[0], bs[1], bs[2]);
  }
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < Ws.size(); ++i) out.push_back(linear(x, Ws[i], bs.empty() ? torch::Tensor() : bs[i]));
  return out;
}

torch::Tensor linear_residual(const torch::Tensor& res, const torch::Tensor& x, const torch::Tensor& W,
                              const torch::Tensor& b) {
  if (recorded(x))
    return b.defined() ? LinearResidual<true>::apply(res, x, W, b) : LinearResidual<false>::apply(res, x, W);
  return res + linear(x, W, b);
}

torch::Tensor gelu_mlp(const torch::Tensor& x, const torch::Tensor& W1, const torch::Tensor& b1,
                       const torch::Tensor& W2, const torch::Tensor& b2) {
  if (recorded(x) && b1.defined() && b2.defined()) return GeluMlp<false>::apply(x, W1, b1, W2, b2)[0];
  return at::linear(gelu_tanh_value(at::linear(x, W1, b1)), W2, b2);
}

torch::Tensor gelu_mlp_residual(const torch::Tensor& res, const torch::Tensor& x, const torch::Tensor& W1,
                                const torch::Tensor& b1, const torch::Tensor& W2, const torch::Tensor& b2) {
  if (recorded(x) && b1.defined() && b2.defined()) return GeluMlp<true>::apply(x, W1, b1, W2, b2, res)[0];
  return res + gelu_mlp(x, W1, b1, W2, b2);
}

}  // namespace bs::ops
