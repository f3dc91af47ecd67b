// The models' elementwise and row kernels of a training step over raw contiguous CPU arrays
// (row_kernels.cpp), split across LibTorch's threads, each in the widest compiled variant the CPU has
// (simd_loop.h), with the same bits in every variant and at any thread count.
#pragma once
#include <array>
#include <cstdint>

namespace bs::ops::detail {

// a = gelu(h), GELU's tanh approximation, over n floats as h sigmoid(2u), one exp per value:
// within a few ulps of the function (tests: GeluTanhRows.*), where LibTorch's 0.5 h (1 + tanh(u))
// loses digits for negative u; not LibTorch's bits.
void gelu_tanh_rows(const float* h, float* a, int64_t n);
// The same for a linear layer's output without its bias: h (rows of `cols`) becomes h + b, row b added
// to every row, in place, and a = gelu(h + b), in one pass (the product then writes h without reading
// a copy of the bias first).
void gelu_tanh_bias_rows(float* h, const float* b, float* a, int64_t rows, int64_t cols);
// out = x + b over rows of `cols`, row b added to every row of x: a residual and a linear layer's bias,
// which the layer's product then accumulates into (instead of a product over the bias rows and an
// addition of the residual after it).
void add_row_vector_rows(const float* x, const float* b, float* out, int64_t rows, int64_t cols);

// SwiGLU y = silu(g) u over n floats, silu(g) = g / (1 + exp(-g)) as LibTorch's with exp_poly's exp,
// and its gradient (dg, du) = (dy u silu'(g), dy silu(g)) in one pass (silu' as LibTorch's
// silu_backward: sig (1 + g (1 - sig))). Within a few ulps of LibTorch's ops, not their bits.
void swiglu_rows(const float* g, const float* u, float* y, int64_t n);
void swiglu_backward_rows(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n);

// RMSNorm over rows of D floats, y = x rho w, rho = 1 / sqrt(mean(x^2) + eps) as LibTorch's
// rsqrt(x.pow(2).mean(-1) + eps) (the sum of squares in sum16's fixed partial sums), rho kept per row.
// Its gradient in one pass per row: dx = rho (z - xh sum(z xh) / D), z = dy w, xh = x rho, and
// dyxh = dy xh, whose column sums are dw. Within a few ulps of LibTorch's ops, not their bits.
void rms_norm_rows(const float* x, const float* w, float eps, float* y, float* rho, int64_t rows, int64_t D);
void rms_norm_backward_rows(const float* dy, const float* x, const float* w, const float* rho, float* dx, float* dyxh,
                            int64_t rows, int64_t D);

// LayerNorm over rows of D floats, y = (x - mean) rstd w + b, rstd = 1 / sqrt(var + eps) with the
// population variance of the row taken about its mean (two passes, sum16's fixed partial sums), mean
// and rstd kept per row. Its gradient in one pass per row: dx = rstd (z - mean(z) - xh mean(z xh)),
// z = dy w, xh = (x - mean) rstd, with the column sums dw = sum dy xh and db = sum dy taken by fixed
// blocks of rows (the same bits at any thread count). Within a few ulps of the formulas, not
// LibTorch's bits (its native_layer_norm takes Welford moments).
void layer_norm_rows(const float* x, const float* w, const float* b, float eps, float* y, float* mean, float* rstd,
                     int64_t rows, int64_t D);
void layer_norm_backward_rows(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                              float* dx, float* dw, float* db, int64_t rows, int64_t D);

// dh = da f'(h) for the tanh GELU from h and the forward's a = gelu(h), without the second tanh
// LibTorch's gelu_backward evaluates (s = 1 + tanh(u) = 2a/h); agrees with gelu_backward to rounding
// (a carries its rounding into s). Float and double; the same bits in both variants.
void gelu_tanh_backward_rows(const float* da, const float* h, const float* a, float* dh, int64_t n);
void gelu_tanh_backward_rows(const double* da, const double* h, const double* a, double* dh, int64_t n);
// The same over rows of `cols` (dh's rows ld_dh apart, the others' cols), with the column sums of dh
// (the gradient of the bias before the GELU) taken in the same pass, by fixed blocks of rows as
// layer_norm_backward_rows' (the same bits at any thread count).
void gelu_tanh_backward_bias_rows(const float* da, const float* h, const float* a, float* dh, int64_t ld_dh, float* db,
                                  int64_t rows, int64_t cols);

// Causal attention's probabilities in place: each of `rows` rows of T scores x (row r at position
// i = r mod T) becomes P_j = exp(s x_j - m) / sum_{l <= i} exp(s x_l - m) for j <= i, m the largest
// s x_j there, and 0 above: softmax(masked s x) in one pass per row, exp_poly's exp (one ulp) for
// Sleef's, the sum in sixteen fixed partial sums (the same bits in both variants and at any thread
// count), then times its reciprocal (as LibTorch's softmax). Within a few ulps of LibTorch's mul, masked_fill and
// softmax (tests: CausalSoftmaxRows.*).
void causal_softmax_rows(float* x, float s, int64_t rows, int64_t T);

// Causal attention's score gradient dS = s P (dP - rowsum(dP P)), dP = dPv (+ gP where gP is not
// null), over rows as causal_softmax_rows' (the causal part [0, i], zero above, where P is zero): one
// pass instead of an addition, the softmax backward and a scaling. The row sum in sum16's sixteen fixed
// partial sums: the same bits in both variants.
void causal_softmax_backward_rows(const float* dPv, const float* gP, const float* P, float s, float* dS, int64_t rows,
                                  int64_t T);
void causal_softmax_backward_rows(const double* dPv, const double* gP, const double* P, double s, double* dS,
                                  int64_t rows, int64_t T);

// Rotary position embedding over rows of 2h values of a [n0, n1, T, 2h] array with strides st (its rows
// contiguous; y has the same strides): y_j = x_j c - sigma x_{j+h} s, y_{j+h} = x_{j+h} c + sigma x_j s,
// with c, s at [t, j] of [T, h] arrays; sigma = 1 rotates, -1 rotates back (the adjoint). Float and
// double, without contracted multiply-adds: the bits of LibTorch's composite x c + rotate_half(x) s.
void rope_rows(const float* x, const float* c, const float* s, float sigma, float* y, const std::array<int64_t, 4>& n,
               const std::array<int64_t, 4>& st);
void rope_rows(const double* x, const double* c, const double* s, double sigma, double* y,
               const std::array<int64_t, 4>& n, const std::array<int64_t, 4>& st);

}  // namespace bs::ops::detail
