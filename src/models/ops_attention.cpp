// Causal attention as an autograd Function whose backward, when it is itself being recorded
// (create_graph=true: building a gradient graph for Hessian-vector products), precomputes what the
// second derivative needs. Worked out:
//   O = P v, P = softmax(s q k^T) (causal): dP = gO v^T, dv = P^T gO, A = dP - rowsum(dP P),
//     dS = s P A, dq = dS k, dk = dS^T q. For a cotangent U of dS / s, r = s rowsum(U P):
//     d/d(dP) = P (s U - r),   d/dP = s U A - r dP   (then through dP = gO v^T and dv = P^T gO).
#include "curvature_ops.h"
#include "curvature_ops_detail.h"
#include "gemm.h"
#include "row_kernels.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>
#include <vector>

namespace bs::ops {

namespace {
using namespace detail;

// Grouped-query attention without copies of the keys: the rep = H / G query heads that share a
// key/value head are stacked along the sequence, so [B, H, T, d] queries become [B G, rep T, d]
// against [B G, T, d] keys and values, and a query row's position is its row index mod T. The sums
// over a group's heads (the keys' and values' gradients) happen inside the matrix products.
Tensor grouped(const Tensor& t, int64_t groups) { return t.reshape({t.size(0) * groups, -1, t.size(-1)}); }

// Causal attention O = P v, P = softmax(s q k^T) with future keys masked, on grouped tensors. As
// LibTorch's ops (the tests' oracle), or (fused) in float the scores turned into P in one row pass
// (causal_softmax_rows: within a few ulps of them, LibTorch's softmax took 2.1 ns a value here), in
// double scaled and masked in one pass (scale_and_mask_causal: the same bits; a mask, a clone and a
// broadcast masked_fill fewer, 2-3 ms of a gpt2-small-cpu layer's forward at 1 thread) before
// LibTorch's softmax. The fused path also takes the heads as they lie, [B, H, T, d] (4-d) queries
// against [B, G, T, d] keys, and returns P [B, H, T, T].
Tensor causal_scores_softmax(const Tensor& q3, const Tensor& k3, double s, bool fused = false) {
  if (fused && !off_rows(q3) && !off_rows(k3)) {
    const auto scores = gemm::bmm(q3, k3.transpose(-2, -1)).contiguous();
    const int64_t T = scores.size(-1);
    if (scores.scalar_type() == torch::kFloat32) {  // one row pass from the scores to P
      causal_softmax_rows(scores.data_ptr<float>(), static_cast<float>(s), scores.numel() / T, T);
      return scores;
    }
    scale_and_mask_causal(scores.view({-1, scores.size(-2), T}), s);
    return torch::softmax(scores, -1);
  }
  const int64_t T = k3.size(1);
  const auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q3.device()))
                        .triu(1)
                        .repeat({q3.size(1) / T, 1});
  const auto scores = gemm::bmm(q3, k3.transpose(1, 2)) * s;
  return torch::softmax(scores.masked_fill(mask, -std::numeric_limits<double>::infinity()), -1);
}

// A [B, H, T, d] tensor's memory laid out as [B, T, H, d], as the models' projections are: the
// models' transpose back and flattening of the heads are then views, not copies.
Tensor heads_layout(const Tensor& like, int64_t d) {
  return torch::empty({like.size(0), like.size(2), like.size(1), d}, like.options()).transpose(1, 2);
}

// Uninitialised (dq, dk, dv) for 4-d heads q, k, v, in heads_layout; in one [B, T, 3, H, d] buffer
// when the three have one shape: the gradient of q, k, v projected side by side (GPT-2's stacked
// q/k/v), which StackedLinear then reads without a concatenation.
std::array<Tensor, 3> gradient_buffers(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (k.sizes() == q.sizes() && v.sizes() == q.sizes()) {
    const auto both = torch::empty({q.size(0), q.size(2), 3, q.size(1), q.size(3)}, q.options());
    return {both.select(2, 0).transpose(1, 2), both.select(2, 1).transpose(1, 2), both.select(2, 2).transpose(1, 2)};
  }
  return {heads_layout(q, q.size(-1)), heads_layout(k, k.size(-1)), heads_layout(v, v.size(-1))};
}

// The gradient (dq, dk, dv) from a cotangent gO of O and, while products run, gP of P (3-d grouped
// tensors, or 4-d heads with grad mode off, whose gradients come in heads_layout, k's and v's summed
// over their groups inside the products):
// dP = gO v^T + gP, dv = P^T gO, dS = s P (dP - rowsum(dP P)), dq = dS k, dk = dS^T q. Differentiable
// when grad mode is on.
std::array<Tensor, 3> attention_backward(const Tensor& gO, const Tensor& gP, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const Tensor& P, double s) {
  Tensor dP = gemm::bmm(gO, v.transpose(-2, -1)), dS;
  if (generic({gO, gP})) {
    if (gP.defined()) dP = dP + gP;
    dS = s * P * (dP - (dP * P).sum(-1, true));
  } else {
    dS = torch::empty_like(dP);
    const auto gPc = gP.defined() ? gP.contiguous() : Tensor();
    AT_DISPATCH_FLOATING_TYPES(dP.scalar_type(), "causal_softmax_backward_rows", [&] {
      causal_softmax_backward_rows(dP.data_ptr<scalar_t>(), gPc.defined() ? gPc.data_ptr<scalar_t>() : nullptr,
                                   P.data_ptr<scalar_t>(), static_cast<scalar_t>(s), dS.data_ptr<scalar_t>(),
                                   dP.numel() / dP.size(-1), dP.size(-1));
    });
  }
  if (dP.dim() == 4) {
    auto [dq, dk, dv] = gradient_buffers(q, k, v);
    gemm::bmm_out(dq, dS, k);
    gemm::bmm_out(dk, dS.transpose(-2, -1), q);
    gemm::bmm_out(dv, P.transpose(-2, -1), gO);
    return {dq, dk, dv};
  }
  return {gemm::bmm(dS, k), gemm::bmm(dS.transpose(1, 2), q), gemm::bmm(P.transpose(1, 2), gO)};
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
  auto U = gemm::bmm(Aq, k.transpose(1, 2));
  gemm::baddbmm_(U, q, Ak.transpose(1, 2));
  Tensor gdP, gP;
  if (generic({U})) {
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
  auto gO = gemm::bmm(P, Av);
  return {gemm::baddbmm_(gO, gdP, v),                  // gO: from dv = P^T gO and dP = gO v^T
          gemm::bmm(dS, Ak),                           // q: from dk = dS^T q
          gemm::bmm(dS.transpose(1, 2), Aq),           // k: from dq = dS k
          gemm::bmm(gdP.transpose(1, 2), G),           // v: from dP = gO v^T
          gemm::baddbmm_(gP, G, Av.transpose(1, 2))};  // P: through dS, and dv = P^T gO
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
    const int64_t g = k.size(1);
    const auto G = grouped(gO, g).contiguous(), q3 = grouped(q, g).contiguous(), k3 = grouped(k, g).contiguous(),
               v3 = grouped(v, g).contiguous();
    const auto dP = gemm::bmm(G, v3.transpose(1, 2));
    const auto A = dP - (dP * P).sum(-1, true);
    const auto dS = s * P * A;
    keep(ctx, {{"G", G}, {"q", q3}, {"k", k3}, {"v", v3}, {"dP", dP}, {"A", A}, {"dS", dS}});
    return {gemm::bmm(dS, k3).view(q.sizes()), gemm::bmm(dS.transpose(1, 2), q3).view(k.sizes()),
            gemm::bmm(P.transpose(1, 2), G).view(v.sizes())};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const double s = ctx->saved_data["s"].toDouble();
    const auto saved = ctx->get_saved_variables();
    const int64_t ng = saved[2].size(1);
    auto cot = [&](size_t i, const Tensor& like) {
      return grad[i].defined() ? grouped(grad[i], ng) : torch::zeros_like(grouped(like, ng));
    };
    const auto Aq = cot(0, saved[1]), Ak = cot(1, saved[2]), Av = cot(2, saved[3]);
    std::array<Tensor, 5> g;
    if (torch::GradMode::is_enabled()) {  // a third derivative: recompute the pieces differentiably
      const auto G = grouped(saved[0], ng), q = grouped(saved[1], ng), k = grouped(saved[2], ng),
                 v = grouped(saved[3], ng), &P = saved[4];
      const auto dP = gemm::bmm(G, v.transpose(1, 2));
      const auto A = dP - (dP * P).sum(-1, true);
      g = attention_backward_vjp(G, q, k, v, P, dP, A, s * P * A, Aq, Ak, Av, s);
    } else {
      auto c = [&](const char* name) { return kept(ctx, name); };
      g = attention_backward_vjp(c("G"), c("q"), c("k"), c("v"), saved[4], c("dP"), c("A"), c("dS"), Aq, Ak, Av, s);
    }
    return {g[0].view(saved[0].sizes()),
            g[1].view(saved[1].sizes()),
            g[2].view(saved[2].sizes()),
            g[3].view(saved[3].sizes()),
            g[4],
            Tensor()};
  }
};

// A training step's float32 attention one head at a time on the heads as they lie (the oneDNN backend
// in force: gemm::product on raw storage): each head's scores, softmax and products, and in the
// backward its dP, dS and three products, run back to back on one thread while the head's T x T
// matrices are in cache, instead of each stage over all heads (4 MB of P for gpt2-small-cpu's layer,
// written and read again from memory by every stage). The products skip what causality makes zero or
// unwanted (small_gemm.h's triangles). `heads_at_once` says where this runs: self-attention (as many
// keys as queries) on float32 CPU arrays whose head rows are contiguous and at least a row apart (what
// sgemm takes, where it runs a product), q and k and the pass's other tensors.
bool heads_at_once(const Tensor& q, const Tensor& k, std::initializer_list<Tensor> others) {
  auto rows = [](const Tensor& t) {
    return !t.defined() || (t.scalar_type() == torch::kFloat32 && !off_rows(t) && t.dim() == 4 && t.stride(3) == 1 &&
                            t.stride(2) >= t.size(3));
  };
  return gemm::raw_products() && q.defined() && k.defined() && rows(q) && rows(k) && k.size(2) == q.size(2) &&
         std::all_of(others.begin(), others.end(), rows);
}

// O [B, H, T, dv] (in heads_layout) and P [B, H, T, T] from q [B, H, T, d] and k, v [B, G, T, *].
std::pair<Tensor, Tensor> attention_heads_forward(const Tensor& q, const Tensor& k, const Tensor& v, double s) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3), dv = v.size(3), rep = H / k.size(1);
  auto P = torch::empty({B, H, T, T}, q.options());
  auto O = heads_layout(q, dv);
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  float *Pp = P.data_ptr<float>(), *Op = O.data_ptr<float>();
  using small_gemm::Triangle;
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / H, h = i % H, g = h / rep;
      const float *qh = qp + b * q.stride(0) + h * q.stride(1), *kg = kp + b * k.stride(0) + g * k.stride(1);
      const float* vg = vp + b * v.stride(0) + g * v.stride(1);
      float* Ph = Pp + i * T * T;
      gemm::product(T, T, d, qh, q.stride(2), 1, kg, 1, k.stride(2), Ph, T, false, Triangle::ResultLower);
      causal_softmax_rows(Ph, static_cast<float>(s), T, T);
      gemm::product(T, dv, T, Ph, T, 1, vg, v.stride(2), 1, Op + b * O.stride(0) + h * O.stride(1), O.stride(2), false,
                    Triangle::ALower);
    }
  });
  return {O, P};
}

// (dq, dk, dv) as attention_backward's 4-d path gives them, a group of query heads (those sharing a
// key/value head) at a time, its heads in order: k's and v's gradients summed over the group in head
// order inside the products, the same bits at any thread count.
std::array<Tensor, 3> attention_heads_backward(const Tensor& gO, const Tensor& gP, const Tensor& q, const Tensor& k,
                                               const Tensor& v, const Tensor& P, double s) {
  const int64_t B = q.size(0), H = q.size(1), G = k.size(1), T = q.size(2), d = q.size(3), dv = v.size(3);
  const int64_t rep = H / G;
  // Named elements, not a structured binding: the lambda below uses them, and C++17 lets a lambda
  // capture no structured binding (GCC allows it; Clang, which builds the fuzzers, does not).
  const std::array<Tensor, 3> grads = gradient_buffers(q, k, v);
  const Tensor &dq = grads[0], &dk = grads[1], &dV = grads[2];
  const auto gPc = gP.defined() ? gP.contiguous() : Tensor();
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float *gOp = gO.data_ptr<float>(), *Pp = P.data_ptr<float>(),
              *gPp = gPc.defined() ? gPc.data_ptr<float>() : nullptr;
  float *dqp = dq.data_ptr<float>(), *dkp = dk.data_ptr<float>(), *dvp = dV.data_ptr<float>();
  using small_gemm::Triangle;
  at::parallel_for(0, B * G, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dP(static_cast<size_t>(T * T)), dS(static_cast<size_t>(T * T));
    for (int64_t j = begin; j < end; ++j) {
      const int64_t b = j / G, g = j % G;
      const float *kg = kp + b * k.stride(0) + g * k.stride(1), *vg = vp + b * v.stride(0) + g * v.stride(1);
      float *dkg = dkp + b * dk.stride(0) + g * dk.stride(1), *dvg = dvp + b * dV.stride(0) + g * dV.stride(1);
      for (int64_t r = 0; r < rep; ++r) {
        const int64_t h = g * rep + r, i = b * H + h;
        const float *qh = qp + b * q.stride(0) + h * q.stride(1), *gOh = gOp + b * gO.stride(0) + h * gO.stride(1);
        const float* Ph = Pp + i * T * T;
        gemm::product(T, T, dv, gOh, gO.stride(2), 1, vg, 1, v.stride(2), dP.data(), T, false, Triangle::ResultLower);
        causal_softmax_backward_rows(dP.data(), gPp ? gPp + i * T * T : nullptr, Ph, static_cast<float>(s), dS.data(),
                                     T, T);
        gemm::product(T, d, T, dS.data(), T, 1, kg, k.stride(2), 1, dqp + b * dq.stride(0) + h * dq.stride(1),
                      dq.stride(2), false, Triangle::ALower);
        gemm::product(T, d, T, dS.data(), 1, T, qh, q.stride(2), 1, dkg, dk.stride(2), r > 0, Triangle::AUpper);
        gemm::product(T, dv, T, Ph, 1, T, gOh, gO.stride(2), 1, dvg, dV.stride(2), r > 0, Triangle::AUpper);
      }
    }
  });
  return {dq, dk, dV};
}

// Whether a training step's attention runs on the heads as they lie ([B, H, T, d] views of the
// projections, 4-d products, results in heads_layout), without grouped()'s copies: CPU arrays. Each
// key/value head serves its group of query heads inside the products (gemm::bmm's grouped heads), and
// the keys' and values' gradients are the sums over each group, also inside the products.
bool by_heads(const Tensor& q, const Tensor& k, const Tensor& v) {
  return !off_rows(q) && !off_rows(k) && !off_rows(v);
}

struct CausalAttention : torch::autograd::Function<CausalAttention> {
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v, double s) {
    ctx->set_materialize_grads(false);  // P's cotangent is undefined except while products run
    ctx->saved_data["s"] = s;
    const int64_t g = k.size(1);
    if (heads_at_once(q, k, {v})) {
      auto [O, P] = attention_heads_forward(q, k, v, s);
      const auto P3 = P.view({q.size(0) * g, -1, P.size(-1)});
      ctx->save_for_backward({q, k, v, P3});
      return {O, P3};
    }
    if (by_heads(q, k, v)) {  // products on the heads as they lie, O in the projections' layout
      const auto P = causal_scores_softmax(q, k, s, /*fused=*/true);
      auto O = heads_layout(q, v.size(-1));
      gemm::bmm_out(O, P, v);
      const auto P3 = P.view({q.size(0) * g, -1, P.size(-1)});  // P as the grouped path keeps it
      ctx->save_for_backward({q, k, v, P3});
      return {O, P3};
    }
    const auto P = causal_scores_softmax(grouped(q, g), grouped(k, g), s, /*fused=*/true);
    auto O = gemm::bmm(P, grouped(v, g));
    ctx->save_for_backward({q, k, v, P});
    return {O.view({q.size(0), q.size(1), q.size(2), v.size(-1)}), P};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const double s = ctx->saved_data["s"].toDouble();
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &P = saved[3];
    const auto gO =
        grad[0].defined() ? grad[0] : torch::zeros({q.size(0), q.size(1), q.size(2), v.size(-1)}, q.options());
    if (torch::GradMode::is_enabled() && !grad[1].defined()) {  // building a gradient graph for products
      auto g = CausalAttentionBackward::apply(gO, q, k, v, P, s);
      return {g[0], g[1], g[2], Tensor()};
    }
    if (!torch::GradMode::is_enabled() && by_heads(q, k, v) && !off_rows(gO) && !off_rows(grad[1])) {
      const auto P4 = P.view({q.size(0), q.size(1), q.size(2), k.size(2)});
      const auto gP4 = grad[1].defined() ? grad[1].reshape(P4.sizes()) : Tensor();
      auto g = heads_at_once(q, k, {v, gO, gP4}) ? attention_heads_backward(gO, gP4, q, k, v, P4, s)
                                                 : attention_backward(gO, gP4, q, k, v, P4, s);
      return {g[0], g[1], g[2], Tensor()};
    }
    const int64_t ng = k.size(1);
    auto g = attention_backward(grouped(gO, ng), grad[1], grouped(q, ng), grouped(k, ng), grouped(v, ng), P, s);
    return {g[0].view(q.sizes()), g[1].view(k.sizes()), g[2].view(v.sizes()), Tensor()};
  }
};

}  // namespace

namespace detail {

template <class T>
void scale_and_mask_rows(T* x, int64_t rows, int64_t T_, T f) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      T* r = x + row * T_;
      const int64_t i = row % T_;
#pragma omp simd
      for (int64_t j = 0; j <= i; ++j) r[j] *= f;
      for (int64_t j = i + 1; j < T_; ++j) r[j] = -std::numeric_limits<T>::infinity();
    }
  });
}

void scale_and_mask_causal(const Tensor& scores, double s) {
  TORCH_CHECK(scores.dim() == 3 && scores.is_contiguous() && scores.device().is_cpu(),
              "scale_and_mask_causal: contiguous 3-d CPU scores, got ", scores.sizes());
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "scale_and_mask_causal", [&] {
    // as `scores * s`: the scalar in the tensor's dtype
    scale_and_mask_rows<scalar_t>(scores.data_ptr<scalar_t>(), scores.size(0) * scores.size(1), scores.size(2),
                                  static_cast<scalar_t>(s));
  });
}

}  // namespace detail

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.size(1) == v.size(1) && q.size(1) % k.size(1) == 0,
              "causal_attention: q [B, H, T, d] and k, v [B, G, T, d] with H a multiple of G, got ", q.sizes(), ", ",
              k.sizes(), ", ", v.sizes());
  const double s = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  if (recorded(q) || recorded(k) || recorded(v)) return CausalAttention::apply(q, k, v, s)[0];
  // LibTorch's ops (the tests' oracle): each key/value head repeated for its queries (Hugging Face's repeat_kv).
  const int64_t rep = q.size(1) / k.size(1), H = q.size(1);
  const auto k_full = rep > 1 ? k.repeat_interleave(rep, 1) : k, v_full = rep > 1 ? v.repeat_interleave(rep, 1) : v;
  const auto O = torch::bmm(causal_scores_softmax(grouped(q, H), grouped(k_full, H), s), grouped(v_full, H));
  return O.view({q.size(0), q.size(1), q.size(2), v.size(-1)});
}

}  // namespace bs::ops
