// Small float32 matrix products for causal attention's per-head products (T x T scores against T x d
// heads), where a library sgemm loses half its speed to the call itself (oneDNN ran 128 x 128 x 32
// products at 60-78 GFLOP/s on one core against 125-134 for the layers' large ones) and cannot skip
// what causality makes zero or unwanted. One register-blocked AVX-512 kernel, for CPUs that have it
// (available()); callers fall back to their sgemm elsewhere. Each result element is the sum over k in
// increasing order, one fused multiply-add at a time: the same bits at any thread count and however
// the products are spread over the threads.
#pragma once
#include <cstdint>

namespace bs::small_gemm {

// What causality says about a square product (M == N for Result, M == K for A): nothing; only C's
// lower triangle (j <= i) is wanted, the rest of C may be left as it was (the scores before a causal
// softmax that reads no further, dP before its backward); A is zero above its diagonal (A[i][k] = 0
// for k > i: P, dS), or below it (A[i][k] = 0 for k < i: P^T, dS^T), so those terms are skipped.
enum class Triangle { None, ResultLower, ALower, AUpper };

// Whether this CPU runs the kernel (AVX-512F, and the loops' widest variant in force: simd_loop.h).
bool available();
// Whether it takes a product of these sizes (N, K <= 1024: it has no blocking over k or wide panels);
// available() included.
bool takes(int64_t N, int64_t K);

// C = A B (accumulate: C += A B) for M x K A with element (i, k) at a[i * a_row + k * a_col] (either
// stride may be 1: a row-major A or a transposed one), K x N B with element (k, n) at b[k * b_row +
// n * b_col] (one of the two strides 1, as gemm::product's operands: b_col == 1 is read in place, b_row
// == 1 packed first) and M x N C with rows ldc apart. Call only where takes(N, K).
void product(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_row, int64_t a_col, const float* b,
             int64_t b_row, int64_t b_col, float* c, int64_t ldc, bool accumulate, Triangle triangle);

}  // namespace bs::small_gemm
