// The models' elementwise and row kernels of a training step (GELU, causal softmax, their backward),
// in both compiled variants (simd_loop.h: the baseline loop and, where the CPU has it, AVX-512F) with
// the same bits: this file is compiled with -ffp-contract=off, its sums run in fixed partial sums, and
// with -fno-trapping-math so that exp_poly's selects vectorize for the baseline.
#include "row_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "exp_poly.h"
#include "simd_loop.h"

namespace bs::ops::detail {

// GELU's tanh approximation 0.5 h (1 + tanh(u)), u = sqrt(2/pi) (h + 0.044715 h^3), as
// h sigmoid(2u): the same function, one exp instead of a tanh, and no cancellation in 1 + tanh(u)
// where u is negative. With z = exp(-2|u|) <= 1 (never overflowing), sigmoid(2u) = 1 / (1 + z) for
// u >= 0 and z / (1 + z) below, so a = h / (1 + z) or h z / (1 + z): results down to the subnormals
// where h / (1 + exp(-2u)) would already have overflowed to -0. As LibTorch's: a = -0 once h^3
// overflows (z = 0), gelu(inf) = inf, gelu(-inf) = NaN (-inf * 0).
void gelu_tanh_rows(const float* h, float* a, int64_t n) {
  constexpr float k = 0.7978845608028654f, c = 0.044715f;
  at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
    elements(
        [h, a](int64_t i) {
          const float x = h[i], u = k * (x + c * x * x * x);
          const float z = exp_poly(-2.0f * (u < 0.0f ? -u : u));
          a[i] = (u >= 0.0f ? x : x * z) / (1.0f + z);
        },
        begin, end);
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
void gelu_tanh_backward_rows_impl(const T* da, const T* h, const T* a, T* dh, int64_t n) {
  const T k = static_cast<T>(std::sqrt(2.0 / M_PI)), k3c = static_cast<T>(3 * 0.044715 * std::sqrt(2.0 / M_PI));
  at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
    elements(
        [=](int64_t j) {
          const T x = h[j];
          const bool zero = x == T(0);  // selects, not a branch: the loop vectorizes
          const T s = zero ? T(1) : T(2) * a[j] / (zero ? T(1) : x);
          dh[j] = da[j] * (T(0.5) * s + T(0.5) * x * s * (T(2) - s) * (k + k3c * x * x));
        },
        begin, end);
  });
}
void gelu_tanh_backward_rows(const float* da, const float* h, const float* a, float* dh, int64_t n) {
  gelu_tanh_backward_rows_impl(da, h, a, dh, n);
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
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
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

// Rows handed to a task at a time: ~16K values' worth of rows of `width` values, at least one.
int64_t rows_per_task(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

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
  // Column sums by blocks of kSumRows rows, each block's in row order, then the blocks' in order: the
  // same bits at any thread count.
  constexpr int64_t kSumRows = 32;
  const int64_t blocks = (rows + kSumRows - 1) / kSumRows;
  std::vector<float> partial(static_cast<size_t>(2 * blocks * D));
  at::parallel_for(0, blocks, rows_per_task(kSumRows * D), [&](int64_t b0, int64_t b1) {
    std::vector<float> row_xh(static_cast<size_t>(D));
    in_variant([&] {
      float* xh = row_xh.data();
      for (int64_t blk = b0; blk < b1; ++blk) {
        float *pw = partial.data() + 2 * blk * D, *pb = pw + D;
        for (int64_t j = 0; j < D; ++j) pw[j] = pb[j] = 0.0f;
        for (int64_t r = blk * kSumRows; r < std::min(rows, (blk + 1) * kSumRows); ++r) {
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
      }
    });
  });
  in_variant([&] {
    for (int64_t j = 0; j < D; ++j) dw[j] = db[j] = 0.0f;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const float *pw = partial.data() + 2 * blk * D, *pb = pw + D;
      for (int64_t j = 0; j < D; ++j) {
        dw[j] += pw[j];
        db[j] += pb[j];
      }
    }
  });
}

void causal_softmax_rows(float* x, float s, int64_t rows, int64_t T) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    in_variant([&] {
      for (int64_t row = begin; row < end; ++row) {
        float* r = x + row * T;
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

}  // namespace bs::ops::detail
