// SiLU, Linear, GPT-2's MLP (GELU), LayerNorm and causal attention as autograd Functions whose
// backward, when it is itself being recorded (create_graph=true: building a gradient graph for Hessian-vector products),
// precomputes what the second derivative needs. Worked out:
//   pointwise y = f(x), dx = dy f'(x):   d(dx)/d(dy) = f'(x),  d(dx)/dx = dy f''(x)
//   attention O = P v, P = softmax(s q k^T) (causal): dP = gO v^T, dv = P^T gO, A = dP - rowsum(dP P),
//     dS = s P A, dq = dS k, dk = dS^T q. For a cotangent U of dS / s, r = s rowsum(U P):
//     d/d(dP) = P (s U - r),   d/dP = s U A - r dP   (then through dP = gO v^T and dv = P^T gO).
#include "curvature_ops.h"

#include <cmath>
#include <limits>

namespace bs::ops {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

thread_local bool g_native = false;

bool recorded(const Tensor& x) { return !g_native && torch::GradMode::is_enabled() && x.requires_grad(); }

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

struct SiluSpec {
  static Tensor value(const Tensor& x) { return at::silu(x); }
  static Tensor backward(const Tensor& dy, const Tensor& x) { return at::silu_backward(dy, x); }
  // f' = sig (1 + x (1 - sig)),  f'' = sig (1 - sig) (2 + x (1 - 2 sig)).
  static std::pair<Tensor, Tensor> derivatives(const Tensor& x) {
    const auto sig = torch::sigmoid(x);
    return {sig * (1 + x * (1 - sig)), sig * (1 - sig) * (2 + x * (1 - 2 * sig))};
  }
};

// f'(x), f''(x) as constants (no graph): what a recorded backward precomputes for the products.
template <class Spec>
std::pair<Tensor, Tensor> constant_derivatives(const Tensor& x) {
  torch::NoGradGuard constants;
  return Spec::derivatives(x);
}

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
      const auto [d1, d2] = constant_derivatives<Spec>(x);
      ctx->saved_data["d1"] = d1;  // later products pass back through here: one multiplication
      return {PointwiseBackward<Spec>::apply(grad[0], x, d1, d2)};
    }
    const auto it = ctx->saved_data.find("d1");
    if (it != ctx->saved_data.end()) return {grad[0] * it->second.toTensor()};
    return {Spec::backward(grad[0], x)};
  }
};

// Causal attention O = P v, P = softmax(s q k^T) with future keys masked, on [N, T, d] tensors.
Tensor causal_scores_softmax(const Tensor& q3, const Tensor& k3, double s) {
  const int64_t T = q3.size(1);
  const auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q3.device())).triu(1);
  const auto scores = torch::bmm(q3, k3.transpose(1, 2)) * s;
  return torch::softmax(scores.masked_fill(mask, -std::numeric_limits<double>::infinity()), -1);
}

Tensor as3d(const Tensor& t) { return t.reshape({-1, t.size(-2), t.size(-1)}); }

// dS = s P (dP - rowsum(dP P)), dP = dPv (+ gP), on the causal part of each row (zero above it,
// where P is zero): one pass instead of an addition, the softmax backward and a scaling.
template <class T>
void causal_softmax_backward_rows(const T* dPv, const T* gP, const T* P, T s, T* dS, int64_t rows, int64_t T_) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % T_, o = row * T_;
      T r = 0;
      if (gP) {
        for (int64_t j = 0; j <= i; ++j) dS[o + j] = dPv[o + j] + gP[o + j];  // dS holds dP for a moment
      } else {
        for (int64_t j = 0; j <= i; ++j) dS[o + j] = dPv[o + j];
      }
#pragma omp simd reduction(+ : r)
      for (int64_t j = 0; j <= i; ++j) r += dS[o + j] * P[o + j];
#pragma omp simd
      for (int64_t j = 0; j <= i; ++j) dS[o + j] = s * P[o + j] * (dS[o + j] - r);
      for (int64_t j = i + 1; j < T_; ++j) dS[o + j] = 0;
    }
  });
}

// The gradient (dq, dk, dv) from a cotangent gO of O and, while products run, gP of P (3-d tensors):
// dP = gO v^T + gP, dv = P^T gO, dS = s P (dP - rowsum(dP P)), dq = dS k, dk = dS^T q. Differentiable
// when grad mode is on.
std::array<Tensor, 3> attention_backward(const Tensor& gO, const Tensor& gP, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const Tensor& P, double s) {
  Tensor dP = torch::bmm(gO, v.transpose(1, 2)), dS;
  if (torch::GradMode::is_enabled()) {
    if (gP.defined()) dP = dP + gP;
    dS = s * P * (dP - (dP * P).sum(-1, true));
  } else {
    dS = torch::empty_like(dP);
    const auto gPc = gP.defined() ? gP.contiguous() : Tensor();
    AT_DISPATCH_FLOATING_TYPES(dP.scalar_type(), "causal_softmax_backward_rows", [&] {
      causal_softmax_backward_rows<scalar_t>(dP.data_ptr<scalar_t>(), gPc.defined() ? gPc.data_ptr<scalar_t>() : nullptr,
                                             P.data_ptr<scalar_t>(), static_cast<scalar_t>(s), dS.data_ptr<scalar_t>(),
                                             dP.size(0) * dP.size(1), dP.size(2));
    });
  }
  return {torch::bmm(dS, k), torch::bmm(dS.transpose(1, 2), q), torch::bmm(P.transpose(1, 2), gO)};
}

// For a cotangent U (unscaled) of dS = s P A, A = dP - rowsum(dP P): r = s rowsum(U P),
// gdP = P (s U - r), gP = s U A - r dP; only the causal part (j <= i) is written, the rest is zero
// (P is zero there, and gP reaches the scores only through the softmax backward, which multiplies by P).
template <class T>
void softmax_second_order_rows(const T* U, const T* P, const T* A, const T* dP, T s, T* gdP, T* gP, int64_t rows,
                               int64_t T_) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % T_, o = row * T_;
      T r = 0;
#pragma omp simd reduction(+ : r)
      for (int64_t j = 0; j <= i; ++j) r += U[o + j] * P[o + j];
      r *= s;
#pragma omp simd
      for (int64_t j = 0; j <= i; ++j) {
        const T u = s * U[o + j];
        gdP[o + j] = P[o + j] * (u - r);
        gP[o + j] = u * A[o + j] - r * dP[o + j];
      }
      for (int64_t j = i + 1; j < T_; ++j) gdP[o + j] = gP[o + j] = 0;
    }
  });
}

// The products' pass through the gradient's attention: given the gradient's pieces (3-d; dP, A,
// dS constants or, for third derivatives, differentiable) and cotangents Aq, Ak, Av of (dq, dk, dv),
// the cotangents of (gO, q, k, v, P). U = Aq k^T + q Ak^T is the cotangent of dS / s.
std::array<Tensor, 5> attention_backward_vjp(const Tensor& G, const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& P, const Tensor& dP, const Tensor& A, const Tensor& dS,
                                             const Tensor& Aq, const Tensor& Ak, const Tensor& Av, double s) {
  const auto U = torch::bmm(Aq, k.transpose(1, 2)).baddbmm_(q, Ak.transpose(1, 2));
  Tensor gdP, gP;
  if (torch::GradMode::is_enabled()) {
    const auto r = s * (U * P).sum(-1, true);
    gdP = P * (s * U - r);
    gP = s * U * A - r * dP;
  } else {
    gdP = torch::empty_like(U);
    gP = torch::empty_like(U);
    AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "softmax_second_order_rows", [&] {
      softmax_second_order_rows<scalar_t>(U.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                                          dP.data_ptr<scalar_t>(), static_cast<scalar_t>(s), gdP.data_ptr<scalar_t>(),
                                          gP.data_ptr<scalar_t>(), U.size(0) * U.size(1), U.size(2));
    });
  }
  // Accumulating in place (fresh tensors) keeps each sum inside its matrix product.
  return {torch::bmm(P, Av).baddbmm_(gdP, v),       // gO: from dv = P^T gO and dP = gO v^T
          torch::bmm(dS, Ak),                       // q: from dk = dS^T q
          torch::bmm(dS.transpose(1, 2), Aq),       // k: from dq = dS k
          torch::bmm(gdP.transpose(1, 2), G),       // v: from dP = gO v^T
          gP.baddbmm_(G, Av.transpose(1, 2))};      // P: through dS, and dv = P^T gO
}

// (dq, dk, dv) as a Function of (gO, q, k, v, P), recorded while a gradient graph is built; P is the
// forward's second output, so what flows to it joins gO in the forward's backward (one softmax
// backward and one q k^T backward per product, as LibTorch's own double backward has).
struct CausalAttentionBackward : torch::autograd::Function<CausalAttentionBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& gO, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& P, double s) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({gO, q, k, v, P});
    ctx->saved_data["s"] = s;
    const auto G = as3d(gO).contiguous(), q3 = as3d(q).contiguous(), k3 = as3d(k).contiguous(),
               v3 = as3d(v).contiguous();
    const auto dP = torch::bmm(G, v3.transpose(1, 2));
    const auto A = dP - (dP * P).sum(-1, true);
    const auto dS = s * P * A;
    for (const auto& [name, t] : std::initializer_list<std::pair<const char*, Tensor>>{
             {"G", G}, {"q", q3}, {"k", k3}, {"v", v3}, {"dP", dP}, {"A", A}, {"dS", dS}})
      ctx->saved_data[name] = t;
    return {torch::bmm(dS, k3).view(q.sizes()), torch::bmm(dS.transpose(1, 2), q3).view(k.sizes()),
            torch::bmm(P.transpose(1, 2), G).view(v.sizes())};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const double s = ctx->saved_data["s"].toDouble();
    const auto saved = ctx->get_saved_variables();
    auto cot = [&](size_t i, const Tensor& like) { return grad[i].defined() ? as3d(grad[i]) : torch::zeros_like(as3d(like)); };
    const auto Aq = cot(0, saved[1]), Ak = cot(1, saved[2]), Av = cot(2, saved[3]);
    std::array<Tensor, 5> g;
    if (torch::GradMode::is_enabled()) {  // a third derivative: recompute the pieces differentiably
      const auto G = as3d(saved[0]), q = as3d(saved[1]), k = as3d(saved[2]), v = as3d(saved[3]), &P = saved[4];
      const auto dP = torch::bmm(G, v.transpose(1, 2));
      const auto A = dP - (dP * P).sum(-1, true);
      g = attention_backward_vjp(G, q, k, v, P, dP, A, s * P * A, Aq, Ak, Av, s);
    } else {
      auto c = [&](const char* name) { return ctx->saved_data[name].toTensor(); };
      g = attention_backward_vjp(c("G"), c("q"), c("k"), c("v"), saved[4], c("dP"), c("A"), c("dS"), Aq, Ak, Av, s);
    }
    return {g[0].view(saved[0].sizes()), g[1].view(saved[1].sizes()), g[2].view(saved[2].sizes()),
            g[3].view(saved[3].sizes()), g[4], Tensor()};
  }
};

struct CausalAttention : torch::autograd::Function<CausalAttention> {
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v, double s) {
    ctx->set_materialize_grads(false);  // P's cotangent is undefined except while products run
    const auto P = causal_scores_softmax(as3d(q), as3d(k), s);
    auto O = torch::bmm(P, as3d(v));
    ctx->save_for_backward({q, k, v, P});
    ctx->saved_data["s"] = s;
    return {O.view({q.size(0), q.size(1), q.size(2), v.size(-1)}), P};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const double s = ctx->saved_data["s"].toDouble();
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &P = saved[3];
    const auto gO = grad[0].defined() ? grad[0] : torch::zeros({q.size(0), q.size(1), q.size(2), v.size(-1)}, q.options());
    if (torch::GradMode::is_enabled() && !grad[1].defined()) {  // building a gradient graph for products
      auto g = CausalAttentionBackward::apply(gO, q, k, v, P, s);
      return {g[0], g[1], g[2], Tensor()};
    }
    auto g = attention_backward(as3d(gO), grad[1], as3d(q), as3d(k), as3d(v), P, s);
    return {g[0].view(q.sizes()), g[1].view(k.sizes()), g[2].view(v.sizes()), Tensor()};
  }
};

// LayerNorm over the last dim, y = xh w + b, xh = (x - mean) rho. Its gradient, per row of D:
// z = dy w, dx = rho (z - mean(z) - xh mean(z xh)), dw = sum_rows dy xh, db = sum_rows dy. For cotangents
// (A, Bw, Bb) of (dx, dw, db), with At = rho (A - mean(A) - xh mean(A xh)), c = mean(z xh):
//   d/d(dy) = w At + xh Bw + Bb,   d/dw = sum_rows dy At,
//   d/dx = rho (q - mean(q) - xh mean(q xh)) - rho^2/D (<A, z - mean(z)> - c <A, xh>) xh,
//   q = dy Bw - rho/D (<A, xh> z + D c A).
template <class T>
void layer_norm_second_order_rows(const T* A, const T* Bw, const T* Bb, const T* dy, const T* xh, const T* z,
                                  const T* rho, const T* c, const T* zbar, const T* w, int64_t N, int64_t D,
                                  T* gdy, T* gx, T* gw) {
  std::fill(gw, gw + D, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const int64_t o = i * D;
    T sA = 0, ax = 0, az = 0, dbw = 0, dbx = 0;
#pragma omp simd reduction(+ : sA, ax, az, dbw, dbx)
    for (int64_t j = 0; j < D; ++j) {
      sA += A[o + j];
      ax += A[o + j] * xh[o + j];
      az += A[o + j] * z[o + j];
      const T db = dy[o + j] * Bw[j];
      dbw += db;
      dbx += db * xh[o + j];
    }
    const T r = rho[i], ci = c[i], invD = T(1) / static_cast<T>(D);
    const T sq = dbw - r * (ax * zbar[i] + ci * sA), qx = dbx - 2 * r * ci * ax;
    const T coef = r * r * invD * (az - zbar[i] * sA - ci * ax);
#pragma omp simd
    for (int64_t j = 0; j < D; ++j) {
      const T At = r * (A[o + j] - (sA + xh[o + j] * ax) * invD);
      gdy[o + j] = w[j] * At + xh[o + j] * Bw[j] + Bb[j];
      gw[j] += dy[o + j] * At;
      const T q = dy[o + j] * Bw[j] - r * invD * (ax * z[o + j] + D * ci * A[o + j]);
      gx[o + j] = r * (q - (sq + xh[o + j] * qx) * invD) - coef * xh[o + j];
    }
  }
}

// (dx, dw, db) as a Function of (dy, x, w), recorded while a gradient graph is built.
struct LayerNormBackward : torch::autograd::Function<LayerNormBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                               const Tensor& b, const Tensor& mean, const Tensor& rstd, double eps) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({dy, x, w});
    ctx->saved_data["eps"] = eps;
    const int64_t D = x.size(-1);
    auto [dx, dw, db] = at::native_layer_norm_backward(dy, x, {D}, mean, rstd, w, b, {true, true, true});
    const auto rho = rstd.reshape({-1, 1});
    const auto xh = (x.reshape({-1, D}) - mean.reshape({-1, 1})) * rho;
    const auto dy2 = dy.reshape({-1, D}).contiguous();
    const auto z = dy2 * w;
    for (const auto& [name, t] : std::initializer_list<std::pair<const char*, Tensor>>{
             {"dy", dy2}, {"xh", xh}, {"z", z}, {"rho", rho}, {"c", (z * xh).mean(-1)}, {"zbar", z.mean(-1)},
             {"w", w}})
      ctx->saved_data[name] = t.contiguous();
    return {dx, dw, db};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &dy = saved[0], &x = saved[1], &w = saved[2];
    const int64_t D = x.size(-1);
    const auto A = grad[0].defined() ? grad[0].reshape({-1, D}).contiguous() : torch::zeros({x.numel() / D, D}, x.options());
    const auto Bw = grad[1].defined() ? grad[1].contiguous() : torch::zeros({D}, x.options());
    const auto Bb = grad[2].defined() ? grad[2].contiguous() : torch::zeros({D}, x.options());
    if (torch::GradMode::is_enabled()) {  // a third derivative: the same formulas in LibTorch's ops
      const double eps = ctx->saved_data["eps"].toDouble();
      const auto x2 = x.reshape({-1, D}), dy2 = dy.reshape({-1, D});
      const auto mu = x2.mean(-1, true);
      const auto rho = (x2 - mu).pow(2).mean(-1, true).add(eps).rsqrt();
      const auto xh = (x2 - mu) * rho, z = dy2 * w;
      const auto c = (z * xh).mean(-1, true), sA = A.sum(-1, true), ax = (A * xh).sum(-1, true);
      const auto At = rho * (A - (sA + xh * ax) / D);
      const auto q = dy2 * Bw - rho / D * (ax * z + D * c * A);
      const auto gx = rho * (q - (q.sum(-1, true) + xh * (q * xh).sum(-1, true)) / D) -
                      rho * rho / D * ((A * z).sum(-1, true) - z.mean(-1, true) * sA - c * ax) * xh;
      return {(w * At + xh * Bw + Bb).view(dy.sizes()), gx.view(x.sizes()), (dy2 * At).sum(0), Tensor(), Tensor(),
              Tensor(), Tensor()};
    }
    auto c = [&](const char* name) { return ctx->saved_data[name].toTensor(); };
    auto gdy = torch::empty_like(A), gx = torch::empty_like(A), gw = torch::empty({D}, x.options());
    AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "layer_norm_second_order_rows", [&] {
      layer_norm_second_order_rows<scalar_t>(
          A.data_ptr<scalar_t>(), Bw.data_ptr<scalar_t>(), Bb.data_ptr<scalar_t>(), c("dy").data_ptr<scalar_t>(),
          c("xh").data_ptr<scalar_t>(), c("z").data_ptr<scalar_t>(), c("rho").data_ptr<scalar_t>(),
          c("c").data_ptr<scalar_t>(), c("zbar").data_ptr<scalar_t>(), c("w").data_ptr<scalar_t>(), A.size(0), D,
          gdy.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>());
    });
    return {gdy.view(dy.sizes()), gx.view(x.sizes()), gw, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

struct LayerNorm : torch::autograd::Function<LayerNorm> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
    auto [y, mean, rstd] = at::native_layer_norm(x, {x.size(-1)}, w, b, eps);
    ctx->save_for_backward({x, w, b});
    ctx->saved_data["mean"] = mean;
    ctx->saved_data["rstd"] = rstd;
    ctx->saved_data["eps"] = eps;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &b = saved[2];
    const auto mean = ctx->saved_data["mean"].toTensor(), rstd = ctx->saved_data["rstd"].toTensor();
    if (torch::GradMode::is_enabled()) {
      auto g = LayerNormBackward::apply(grad[0], x, w, b, mean, rstd, ctx->saved_data["eps"].toDouble());
      return {g[0], g[1], g[2], Tensor()};
    }
    auto [dx, dw, db] = at::native_layer_norm_backward(grad[0], x, {x.size(-1)}, mean, rstd, w, b, {true, true, true});
    return {dx, dw, db, Tensor()};
  }
};

// The gradient of y = x W^T + b: dx = dy W, dW = dy^T x, db = sum_rows dy (dy of any leading shape).
variable_list linear_gradient(const Tensor& dy, const Tensor& x, const Tensor& W) {
  const auto dy2 = dy.reshape({-1, W.size(0)});
  return {dy2.mm(W).view(x.sizes()), dy2.t().mm(x.reshape({-1, W.size(1)})), dy2.sum(0)};
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
      if (gdy.defined()) gdy.addmm_(a, b);
      else gdy = Bb.defined() ? torch::addmm(Bb, a, b) : a.mm(b);
    };
    if (A.defined()) add_product(A, W.t());
    if (Bw.defined()) add_product(x2, Bw.t());
    if (!gdy.defined() && Bb.defined()) gdy = Bb.expand(dy2.sizes()).contiguous();
    return {gdy.defined() ? gdy.view(dy.sizes()) : Tensor(), Bw.defined() ? dy2.mm(Bw).view(x.sizes()) : Tensor(),
            A.defined() ? dy2.t().mm(A) : Tensor()};
  }
};

struct Linear : torch::autograd::Function<Linear> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& W, const Tensor& b) {
    ctx->save_for_backward({x, W});
    return at::linear(x, W, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &W = saved[1];
    if (torch::GradMode::is_enabled()) return LinearBackward::apply(grad[0], x, W);
    return linear_gradient(grad[0], x, W);
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
  Tensor gh = dy.mm(Bw), cda;
  if (torch::GradMode::is_enabled()) {
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
  return {torch::addmm(Bb, cda, W.t()).addmm_(a, Bw.t()), dy.t().mm(cda), gh};
}

// (dh, dW, db) as a Function of (dy, h, W), recorded while a gradient graph is built; d1, d2 are
// f'(h), f''(h) as [rows, D] constants.
struct GeluLinearBackward : torch::autograd::Function<GeluLinearBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& dy, const Tensor& h, const Tensor& W,
                               const Tensor& d1, const Tensor& d2) {
    ctx->save_for_backward({dy, h, W});
    const auto dy2 = dy.reshape({-1, W.size(0)}), h2 = h.reshape({-1, W.size(1)});
    const auto a = GeluTanhSpec::value(h2), da = dy2.mm(W);
    for (const auto& [name, t] : std::initializer_list<std::pair<const char*, Tensor>>{
             {"dy", dy2}, {"a", a}, {"d1", d1}, {"da_d2", da * d2}})
      ctx->saved_data[name] = t.contiguous();
    return {GeluTanhSpec::backward(da, h2).view(h.sizes()), dy2.t().mm(a), dy2.sum(0)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &dy = saved[0], &h = saved[1], &W = saved[2];
    const auto Ah = grad[0].reshape({-1, W.size(1)});
    std::array<Tensor, 3> g;
    if (torch::GradMode::is_enabled()) {  // a third derivative: the pieces recomputed differentiably
      const auto dy2 = dy.reshape({-1, W.size(0)}), h2 = h.reshape({-1, W.size(1)});
      const auto [d1, d2] = GeluTanhSpec::derivatives(h2);
      g = gelu_linear_vjp(dy2, W, GeluTanhSpec::value(h2), d1, dy2.mm(W) * d2, Ah, grad[1], grad[2]);
    } else {
      auto c = [&](const char* name) { return ctx->saved_data[name].toTensor(); };
      g = gelu_linear_vjp(c("dy"), W, c("a"), c("d1"), c("da_d2"), Ah, grad[1], grad[2]);
    }
    return {g[0].view(dy.sizes()), g[2].view(h.sizes()), g[1], Tensor(), Tensor()};
  }
};

// GPT-2's MLP, y = gelu(h) W2^T + b2, h = x W1^T + b1, as one node that also returns h: while
// products run, what flows to h from the gradient's pieces joins the product's own cotangent in one
// fused pass (dh = da f'(h) + gh) instead of a multiplication and an addition.
struct GeluMlp : torch::autograd::Function<GeluMlp> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& W1, const Tensor& b1,
                               const Tensor& W2, const Tensor& b2) {
    ctx->set_materialize_grads(false);
    auto h = at::linear(x, W1, b1);
    const auto a = GeluTanhSpec::value(h);
    ctx->save_for_backward({x, W1, W2, h});
    ctx->saved_data["a"] = a;
    return {at::linear(a, W2, b2), h};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &W1 = saved[1], &W2 = saved[2], &h = saved[3];
    const auto gy = grad[0].defined() ? grad[0] : torch::zeros({h.numel() / W1.size(0), W2.size(0)}, h.options());
    if (torch::GradMode::is_enabled() && !grad[1].defined()) {  // building a gradient graph for products
      const auto [d1, d2] = constant_derivatives<GeluTanhSpec>(h.reshape({-1, W1.size(0)}));
      ctx->saved_data["d1"] = d1;  // later products pass back through here: one fused pass
      auto g2 = GeluLinearBackward::apply(gy, h, W2, d1, d2);  // (dh, dW2, db2)
      auto g1 = LinearBackward::apply(g2[0], x, W1);   // (dx, dW1, db1)
      return {g1[0], g1[1], g1[2], g2[1], g2[2]};
    }
    const auto dy = gy.reshape({-1, W2.size(0)}), h2 = h.reshape({-1, W1.size(0)});
    const auto da = dy.mm(W2);
    Tensor dh;
    const auto it = ctx->saved_data.find("d1");
    if (torch::GradMode::is_enabled() || it == ctx->saved_data.end()) {
      dh = GeluTanhSpec::backward(da, h2);
      if (grad[1].defined()) dh = dh + grad[1].reshape(dh.sizes());
    } else {
      dh = grad[1].defined() ? torch::addcmul(grad[1].reshape(da.sizes()), da, it->second.toTensor())
                             : da.mul_(it->second.toTensor());
    }
    const auto a = torch::GradMode::is_enabled() ? GeluTanhSpec::value(h2)  // differentiable for third derivatives
                                                 : ctx->saved_data["a"].toTensor().reshape({-1, W1.size(0)});
    auto g = linear_gradient(dh, x, W1);
    return {g[0], g[1], g[2], dy.t().mm(a), dy.sum(0)};
  }
};

}  // namespace

torch::Tensor silu(const torch::Tensor& x) { return recorded(x) ? Pointwise<SiluSpec>::apply(x) : SiluSpec::value(x); }

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const double s = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  if (recorded(q) || recorded(k) || recorded(v)) return CausalAttention::apply(q, k, v, s)[0];
  const auto O = torch::bmm(causal_scores_softmax(as3d(q), as3d(k), s), as3d(v));
  return O.view({q.size(0), q.size(1), q.size(2), v.size(-1)});
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
  if (recorded(x) && b.defined()) return Linear::apply(x, W, b);
  return at::linear(x, W, b);
}

torch::Tensor gelu_mlp(const torch::Tensor& x, const torch::Tensor& W1, const torch::Tensor& b1,
                       const torch::Tensor& W2, const torch::Tensor& b2) {
  if (recorded(x) && b1.defined() && b2.defined()) return GeluMlp::apply(x, W1, b1, W2, b2)[0];
  return at::linear(GeluTanhSpec::value(at::linear(x, W1, b1)), W2, b2);
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, double eps) {
  if (recorded(x) && w.defined() && b.defined()) return LayerNorm::apply(x, w, b, eps);
  return at::layer_norm(x, {x.size(-1)}, w, b, eps);
}

NativeSecondOrder::NativeSecondOrder() : m_previous(g_native) { g_native = true; }
NativeSecondOrder::~NativeSecondOrder() { g_native = m_previous; }

}  // namespace bs::ops
