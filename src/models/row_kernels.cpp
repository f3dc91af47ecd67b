// The models' elementwise and row kernels of a training step (GELU, causal softmax, RoPE, their backward),
// in both compiled variants (simd_loop.h: the baseline loop and, where the CPU has it, AVX-512F) with
// the same bits: this file is compiled with -ffp-contract=off, its sums run in fixed partial sums, and
// with -fno-trapping-math so that exp_poly's selects vectorize for the baseline.
#include "row_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "exp_poly.h"
#include "simd_loop.h"

namespace bs::ops::detail {

namespace {

// Rows handed to a task at a time: ~16K values' worth of rows of `width` values, at least one.
int64_t rows_per_task(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

// Column sums taken in a pass over rows: the rows in blocks of kSumRows, across the threads, each
// block's pass(r0, r1, sums) adding its rows into the block's `width` sums (zeroed first) in row order;
// then out = the blocks' sums added in block order. The same bits at any thread count (and in both
// variants: pass runs in in_variant).
constexpr int64_t kSumRows = 32;
template <class Pass>
void rows_with_column_sums(int64_t rows, int64_t width, int64_t row_width, float* out, const Pass& pass) {
  const int64_t blocks = (rows + kSumRows - 1) / kSumRows;
  std::vector<float> partial(static_cast<size_t>(blocks * width));
  at::parallel_for(0, blocks, rows_per_task(kSumRows * row_width), [&](int64_t b0, int64_t b1) {
    in_variant([&] {
      for (int64_t blk = b0; blk < b1; ++blk) {
        float* sums = partial.data() + blk * width;
        for (int64_t j = 0; j < width; ++j) sums[j] = 0.0f;
        pass(blk * kSumRows, std::min(rows, (blk + 1) * kSumRows), sums);
      }
    });
  });
  in_variant([&] {
    for (int64_t j = 0; j < width; ++j) out[j] = 0.0f;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const float* sums = partial.data() + blk * width;
      for (int64_t j = 0; j < width; ++j) out[j] += sums[j];
    }
  });
}

}  // namespace

// GELU's tanh approximation 0.5 h (1 + tanh(u)), u = sqrt(2/pi) (h + 0.044715 h^3), as
// h sigmoid(2u): the same function, one exp instead of a tanh, and no cancellation in 1 + tanh(u)
// where u is negative. With z = exp(-2|u|) <= 1 (never overflowing), sigmoid(2u) = 1 / (1 + z) for
// u >= 0 and z / (1 + z) below, so a = h / (1 + z) or h z / (1 + z): results down to the subnormals
// where h / (1 + exp(-2u)) would already have overflowed to -0. As LibTorch's: a = -0 once h^3
// overflows (z = 0), gelu(inf) = inf, gelu(-inf) = NaN (-inf * 0).
namespace {
__attribute__((always_inline)) inline float gelu_tanh(float x) {
  constexpr float k = 0.7978845608028654f, c = 0.044715f;
  const float u = k * (x + c * x * x * x);
  const float z = exp_poly(-2.0f * (u < 0.0f ? -u : u));
  return (u >= 0.0f ? x : x * z) / (1.0f + z);
}
}  // namespace

void gelu_tanh_rows(const float* h, float* a, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
    elements([h, a](int64_t i) { a[i] = gelu_tanh(h[i]); }, begin, end);
  });
}

void gelu_tanh_bias_rows(float* h, const float* b, float* a, int64_t rows, int64_t cols) {
  at::parallel_for(0, rows, rows_per_task(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* hr = h + r * cols;
      float* ar = a + r * cols;
      elements(
          [hr, ar, b](int64_t j) {
            const float x = hr[j] + b[j];
            hr[j] = x;
            ar[j] = gelu_tanh(x);
          },
          0, cols);
    }
  });
}

void add_row_vector_rows(const float* x, const float* b, float* out, int64_t rows, int64_t cols) {
  at::parallel_for(0, rows, rows_per_task(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * cols;
      float* o = out + r * cols;
      elements([xr, o, b](int64_t j) { o[j] = xr[j] + b[j]; }, 0, cols);
    }
  });
}

// SwiGLU y = silu(g) u with silu(g) = g / (1 + exp(-g)), LibTorch's formula with exp_poly's exp.
void swiglu_rows(const float* g, const float* u, float* y, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
    elements([=](int64_t j) { y[j] = g[j] / (1.0f + exp_poly(-g[j])) * u[j]; }, begin, end);
  });
}

// Its gradient: dg = (dy u) sig (1 + g (1 - sig)) (LibTorch's silu_backward on dy u), du = dy silu(g),
// sig = 1 / (1 + exp(-g)).
void swiglu_backward_rows(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
    elements(
        [=](int64_t j) {
          const float x = g[j], d = 1.0f + exp_poly(-x), sig = 1.0f / d;
          dg[j] = dy[j] * u[j] * sig * (1.0f + x * (1.0f - sig));
          du[j] = dy[j] * (x / d);
        },
        begin, end);
  });
}

// dh = da f'(h) from h and the forward's a = gelu(h), without a second tanh: with s = 1 + tanh(u) = 2a/h
// (s = 1 at h = 0) and 1 - tanh(u)^2 = s (2 - s), f'(h) = s/2 + h s (2 - s) u'/2, u' = k (1 + 3 c h^2).
template <class T>
__attribute__((always_inline)) inline T gelu_tanh_grad(T da, T x, T a) {
  const T k = static_cast<T>(std::sqrt(2.0 / M_PI)), k3c = static_cast<T>(3 * 0.044715 * std::sqrt(2.0 / M_PI));
  const bool zero = x == T(0);  // selects, not a branch: the loop vectorizes
  const T s = zero ? T(1) : T(2) * a / (zero ? T(1) : x);
  return da * (T(0.5) * s + T(0.5) * x * s * (T(2) - s) * (k + k3c * x * x));
}

template <class T>
void gelu_tanh_backward_rows_impl(const T* da, const T* h, const T* a, T* dh, int64_t n) {
  at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
    elements([=](int64_t j) { dh[j] = gelu_tanh_grad(da[j], h[j], a[j]); }, begin, end);
  });
}
void gelu_tanh_backward_rows(const float* da, const float* h, const float* a, float* dh, int64_t n) {
  gelu_tanh_backward_rows_impl(da, h, a, dh, n);
}
void gelu_tanh_backward_bias_rows(const float* da, const float* h, const float* a, float* dh, int64_t ld_dh, float* db,
                                  int64_t rows, int64_t cols) {
  rows_with_column_sums(rows, cols, cols, db, [&](int64_t r0, int64_t r1, float* sums) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r * cols;
      float* d = dh + r * ld_dh;
      for (int64_t j = 0; j < cols; ++j) {
        const float g = gelu_tanh_grad(da[o + j], h[o + j], a[o + j]);
        d[j] = g;
        sums[j] += g;
      }
    }
  });
}
void gelu_tanh_backward_rows(const double* da, const double* h, const double* a, double* dh, int64_t n) {
  gelu_tanh_backward_rows_impl(da, h, a, dh, n);
}

namespace {
// Sixteen T in one vector (GCC's vector extension; split into registers of the variant's width).
template <class T>
struct Sixteen {
  typedef T type __attribute__((vector_size(16 * sizeof(T))));
};

// Lanes j < w add lane j + w, for w = 8, 4, 2, 1, and lane 0 is the sum: sum16's pairwise order, in
// registers (shuffles; a loop over the lanes went through the stack, ~15 % of a short row's time).
template <class V>
__attribute__((always_inline)) inline auto pairwise_sum16(const V& v) {
  V a = v;
  a += __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
  a += __builtin_shufflevector(a, a, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
  a += __builtin_shufflevector(a, a, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  a += __builtin_shufflevector(a, a, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  return a[0];
}

// The largest of the sixteen lanes (exact in any order; NaN lanes never got in), in registers.
template <class V>
__attribute__((always_inline)) inline auto max16(const V& v) {
  V a = v;
  V b = __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
  a = b > a ? b : a;
  b = __builtin_shufflevector(a, a, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
  a = b > a ? b : a;
  b = __builtin_shufflevector(a, a, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  a = b > a ? b : a;
  b = __builtin_shufflevector(a, a, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  a = b > a ? b : a;
  return a[0];
}

// a's lanes from `count` on set to `fill` (the lanes of a row's last sixteen past its end).
template <class T>
using LaneOf = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <class T>
__attribute__((always_inline)) inline void keep_lanes_below(typename Sixteen<T>::type& a, int64_t count, T fill) {
  using I = typename Sixteen<LaneOf<T>>::type;
  const I lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  a = lane < static_cast<LaneOf<T>>(count) + I{} ? a : fill + typename Sixteen<T>::type{};
}

// sum_j x[j] y[j] over [0, n), or sum_j x[j] where y is null (a constant at every call, so the choice
// is compiled away), as sixteen partial sums (lane j adds the terms j, j + 16, ...; the tail's terms in
// lanes 0...) added pairwise at the end: one order whatever the variant's vector width.
template <class T>
__attribute__((always_inline)) inline T sum16(const T* x, const T* y, int64_t n) {
  using V = typename Sixteen<T>::type;
  V acc = {}, tail = {};
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    V a;
    std::memcpy(&a, x + k, sizeof a);
    if (y) {
      V b;
      std::memcpy(&b, y + k, sizeof b);
      a *= b;
    }
    acc += a;
  }
  for (int64_t j = 0; k + j < n; ++j) tail[j] = y ? x[k + j] * y[k + j] : x[k + j];
  acc += tail;
  return pairwise_sum16(acc);
}

// One row of causal_softmax_backward_rows_impl where T_ is a multiple of 16, n <= T_ values in its
// causal part: in whole sixteens, the last one's lanes from n on masked (dP P there is taken as +0, as
// sum16's tail takes it), the row sum in registers; the same bits as the general loop below.
template <class T>
__attribute__((always_inline)) inline void causal_softmax_backward_row16(const T* dPv, const T* gP, const T* p, T s,
                                                                         T* d, int64_t n, int64_t T_) {
  using V = typename Sixteen<T>::type;
  const int64_t nn = (n + 15) / 16 * 16;
  V acc = {};
  for (int64_t k = 0; k < nn; k += 16) {
    V a, b;
    std::memcpy(&a, dPv + k, sizeof a);
    if (gP) {
      std::memcpy(&b, gP + k, sizeof b);
      a += b;
    }
    std::memcpy(d + k, &a, sizeof a);  // d holds dP for a moment
    std::memcpy(&b, p + k, sizeof b);
    a *= b;
    if (k + 16 == nn) keep_lanes_below<T>(a, n - k, T(0));
    acc += a;
  }
  const T r = pairwise_sum16(acc);
  for (int64_t k = 0; k < nn; k += 16) {
    V a, b;
    std::memcpy(&a, d + k, sizeof a);
    std::memcpy(&b, p + k, sizeof b);
    a = s * b * (a - r);
    if (k + 16 == nn) keep_lanes_below<T>(a, n - k, T(0));
    std::memcpy(d + k, &a, sizeof a);
  }
  for (int64_t k = nn; k < T_; k += 16) {
    const V z = {};
    std::memcpy(d + k, &z, sizeof z);
  }
}

// dS = s P (dP - rowsum(dP P)), dP = dPv (+ gP), on the causal part of each row, zero above it.
template <class T>
void causal_softmax_backward_rows_impl(const T* dPv, const T* gP, const T* P, T s, T* dS, int64_t rows, int64_t T_) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    in_variant([&] {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row % T_ + 1, o = row * T_;
        T* d = dS + o;
        const T* p = P + o;
        if (T_ % 16 == 0) {
          causal_softmax_backward_row16(dPv + o, gP ? gP + o : nullptr, p, s, d, n, T_);
          continue;
        }
        if (gP) {
          for (int64_t j = 0; j < n; ++j) d[j] = dPv[o + j] + gP[o + j];  // d holds dP for a moment
        } else {
          std::memcpy(d, dPv + o, n * sizeof(T));
        }
        const T r = sum16(d, p, n);
        for (int64_t j = 0; j < n; ++j) d[j] = s * p[j] * (d[j] - r);
        for (int64_t j = n; j < T_; ++j) d[j] = 0;
      }
    });
  });
}

// sum_j x[j] over [0, n) in sum16's order.
template <class T>
__attribute__((always_inline)) inline T sum16(const T* x, int64_t n) {
  return sum16(x, static_cast<const T*>(nullptr), n);
}

// x[0, n) *= s (as `scores * s`), returning the largest (exact in any order), sixteen lanes at a time.
__attribute__((always_inline)) inline float scale_and_max(float* x, float s, int64_t n) {
  const float lowest = -std::numeric_limits<float>::infinity();
  Sixteen<float>::type most = lowest - Sixteen<float>::type{};
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    Sixteen<float>::type v;
    std::memcpy(&v, x + k, sizeof v);
    v *= s;
    std::memcpy(x + k, &v, sizeof v);
    most = v > most ? v : most;
  }
  float m = lowest;
  for (int j = 0; j < 16; ++j) m = most[j] > m ? most[j] : m;
  for (; k < n; ++k) {
    x[k] *= s;
    m = x[k] > m ? x[k] : m;
  }
  return m;
}
}  // namespace

void causal_softmax_backward_rows(const float* dPv, const float* gP, const float* P, float s, float* dS, int64_t rows,
                                  int64_t T) {
  causal_softmax_backward_rows_impl(dPv, gP, P, s, dS, rows, T);
}
void causal_softmax_backward_rows(const double* dPv, const double* gP, const double* P, double s, double* dS,
                                  int64_t rows, int64_t T) {
  causal_softmax_backward_rows_impl(dPv, gP, P, s, dS, rows, T);
}

void rms_norm_rows(const float* x, const float* w, float eps, float* y, float* rho, int64_t rows, int64_t D) {
  at::parallel_for(0, rows, rows_per_task(D), [&](int64_t begin, int64_t end) {
    in_variant([&] {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x + r * D;
        float* yr = y + r * D;
        const float p = 1.0f / std::sqrt(sum16(xr, xr, D) / static_cast<float>(D) + eps);
        rho[r] = p;
        for (int64_t j = 0; j < D; ++j) yr[j] = xr[j] * p * w[j];
      }
    });
  });
}

void rms_norm_backward_rows(const float* dy, const float* x, const float* w, const float* rho, float* dx, float* dyxh,
                            int64_t rows, int64_t D) {
  at::parallel_for(0, rows, rows_per_task(D), [&](int64_t begin, int64_t end) {
    in_variant([&] {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t o = r * D;
        const float p = rho[r];
        float *z = dx + o, *xh = dyxh + o;  // z = dy w and xh = x rho for a moment
        for (int64_t j = 0; j < D; ++j) {
          z[j] = dy[o + j] * w[j];
          xh[j] = x[o + j] * p;
        }
        const float s = sum16(z, xh, D);
        for (int64_t j = 0; j < D; ++j) {
          const float h = xh[j];
          z[j] = p * (z[j] - h * s / static_cast<float>(D));
          xh[j] = dy[o + j] * h;
        }
      }
    });
  });
}

// LayerNorm: the mean and the variance in two passes over the row (sum16's partial sums), then
// y = (x - mean) rstd w + b; x - mean is kept in y for a moment.
void layer_norm_rows(const float* x, const float* w, const float* b, float eps, float* y, float* mean, float* rstd,
                     int64_t rows, int64_t D) {
  at::parallel_for(0, rows, rows_per_task(D), [&](int64_t begin, int64_t end) {
    in_variant([&] {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = x + r * D;
        float* yr = y + r * D;
        const float m = sum16(xr, D) / static_cast<float>(D);
        for (int64_t j = 0; j < D; ++j) yr[j] = xr[j] - m;
        const float p = 1.0f / std::sqrt(sum16(yr, yr, D) / static_cast<float>(D) + eps);
        mean[r] = m;
        rstd[r] = p;
        for (int64_t j = 0; j < D; ++j) yr[j] = yr[j] * p * w[j] + b[j];
      }
    });
  });
}

void layer_norm_backward_rows(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                              float* dx, float* dw, float* db, int64_t rows, int64_t D) {
  std::vector<float> sums(static_cast<size_t>(2 * D));  // dw, then db
  rows_with_column_sums(rows, 2 * D, D, sums.data(), [&](int64_t r0, int64_t r1, float* pw) {
    float* pb = pw + D;
    std::vector<float> row_xh(static_cast<size_t>(D));
    float* xh = row_xh.data();
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r * D;
      const float p = rstd[r], m = mean[r], invD = 1.0f / static_cast<float>(D);
      float* z = dx + o;  // z = dy w for a moment
      for (int64_t j = 0; j < D; ++j) {
        z[j] = dy[o + j] * w[j];
        xh[j] = (x[o + j] - m) * p;
      }
      const float zbar = sum16(z, D) * invD, c = sum16(z, xh, D) * invD;
      for (int64_t j = 0; j < D; ++j) {
        z[j] = p * (z[j] - zbar - xh[j] * c);
        pw[j] += dy[o + j] * xh[j];
        pb[j] += dy[o + j];
      }
    }
  });
  std::copy_n(sums.begin(), D, dw);
  std::copy_n(sums.begin() + D, D, db);
}

// One row of causal_softmax_rows where T is a multiple of 16, n <= T values in its causal part: in
// whole sixteens (the last one's lanes from n on masked with -inf before the scaling, as the general
// loop masks them), the largest and the sum kept in registers, exp and the sum in one pass (lane j adds
// the values j, j + 16, ...: sum16's order). The same bits as the general loop below, ~2x faster on
// 128-value rows (79 -> 37 ns a row on the Zen 5 VM).
__attribute__((always_inline)) inline void causal_softmax_row16(float* r, float s, int64_t n, int64_t T) {
  using V = Sixteen<float>::type;
  const float lowest = -std::numeric_limits<float>::infinity();
  const int64_t nn = (n + 15) / 16 * 16;
  V most = lowest - V{};
  for (int64_t k = 0; k < nn; k += 16) {
    V v;
    std::memcpy(&v, r + k, sizeof v);
    if (k + 16 == nn) keep_lanes_below<float>(v, n - k, lowest);
    v *= s;
    std::memcpy(r + k, &v, sizeof v);
    most = v > most ? v : most;
  }
  const float m = max16(most);
  float acc[16] = {};  // (exp's values are >= +0: no lane is ever -0, and no +0 tail is needed)
  for (int64_t k = 0; k < nn; k += 16) {
    float* c = r + k;
    for (int j = 0; j < 16; ++j) {
      c[j] = exp_poly(c[j] - m);
      acc[j] += c[j];
    }
  }
  V a;
  std::memcpy(&a, acc, sizeof a);
  const float inv = 1.0f / pairwise_sum16(a);
  for (int64_t k = 0; k < nn; k += 16) {
    V v;
    std::memcpy(&v, r + k, sizeof v);
    v *= inv;
    std::memcpy(r + k, &v, sizeof v);
  }
  for (int64_t k = nn; k < T; k += 16) {
    const V z = {};
    std::memcpy(r + k, &z, sizeof z);
  }
}

void causal_softmax_rows(float* x, float s, int64_t rows, int64_t T) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    in_variant([&] {
      const float sl = s;  // a local: a store through the rows could otherwise alias the captured one
      for (int64_t row = begin; row < end; ++row) {
        float* r = x + row * T;
        if (T % 16 == 0) {
          causal_softmax_row16(r, sl, row % T + 1, T);
          continue;
        }
        // The causal part [0, n) and what it takes to fill whole sixteens, nn, masked with -inf (exp: 0).
        const int64_t n = row % T + 1, nn = std::min(T, (n + 15) / 16 * 16);
        for (int64_t j = n; j < nn; ++j) r[j] = -std::numeric_limits<float>::infinity();
        const float m = scale_and_max(r, s, nn);
        for (int64_t j = 0; j < nn; ++j) r[j] = exp_poly(r[j] - m);
        const float inv = 1.0f / sum16(r, nn);  // (zeros past n add nothing)
        for (int64_t j = 0; j < nn; ++j) r[j] *= inv;
        for (int64_t j = nn; j < T; ++j) r[j] = 0.0f;
      }
    });
  });
}

namespace {
// The rows of [n0, n1, T, 2h] are walked in order with their three indices carried along (no division
// per row: a row is 2h = 32 values in the models, a few vector instructions).
template <class T>
void rope_rows_impl(const T* x, const T* c, const T* s, T sigma, T* y, const std::array<int64_t, 4>& n,
                    const std::array<int64_t, 4>& st) {
  const int64_t T_ = n[2], h = n[3] / 2, rows = n[0] * n[1] * n[2];
  at::parallel_for(0, rows, rows_per_task(n[3]), [&](int64_t begin, int64_t end) {
    in_variant([&] {
      const T sg = sigma;  // a local: a store through y could otherwise alias the captured one
      int64_t t = begin % T_, i1 = begin / T_ % n[1], i0 = begin / T_ / n[1];
      for (int64_t r = begin; r < end; ++r) {
        const int64_t o = i0 * st[0] + i1 * st[1] + t * st[2];
        const T *xr = x + o, *cr = c + t * h, *sr = s + t * h;
        T* yr = y + o;
#pragma omp simd  // y and x never overlap (rope's result is a fresh array)
        for (int64_t j = 0; j < h; ++j) {
          yr[j] = xr[j] * cr[j] - sg * xr[j + h] * sr[j];
          yr[j + h] = xr[j + h] * cr[j] + sg * xr[j] * sr[j];
        }
        if (++t == T_) {
          t = 0;
          if (++i1 == n[1]) i1 = 0, ++i0;
        }
      }
    });
  });
}
}  // namespace

void rope_rows(const float* x, const float* c, const float* s, float sigma, float* y, const std::array<int64_t, 4>& n,
               const std::array<int64_t, 4>& st) {
  rope_rows_impl(x, c, s, sigma, y, n, st);
}
void rope_rows(const double* x, const double* c, const double* s, double sigma, double* y,
               const std::array<int64_t, 4>& n, const std::array<int64_t, 4>& st) {
  rope_rows_impl(x, c, s, sigma, y, n, st);
}

}  // namespace bs::ops::detail
