// Matrix products for the models' layers and the curvature ops. Float32 products on the CPU go to
// oneDNN's sgemm (LibTorch loads oneDNN; its kernels pick the widest vector unit at run time),
// everything else (float64, other devices, products autograd must record) to LibTorch's own, i.e.
// its BLAS. BLOCKSHARP_GEMM=libtorch (or set_backend) sends every product to LibTorch.
#pragma once
#include <torch/torch.h>

#include <string>

#include "small_gemm.h"

namespace bs::gemm {

enum class Backend { OneDnn, LibTorch };

// The backend in force: BLOCKSHARP_GEMM's choice ("onednn", the default, or "libtorch") until
// set_backend; OneDnn only where oneDNN's sgemm was found.
Backend backend();
void set_backend(Backend b);
bool onednn_available();
// "oneDNN 2.6.3", "LibTorch (OpenBLAS Haswell)": what a benchmark reports.
std::string describe(Backend b);
// Which OpenBLAS kernel table LibTorch's products run on ("Haswell", "SkylakeX"; "" for another
// BLAS). Some machines pin it (OPENBLAS_CORETYPE) for correctness.
std::string blas_core();
// Where that table has no AVX2 kernels on a CPU with AVX2 (Debian's OpenBLAS 0.3.21 does not know
// newer CPUs and falls back to Prescott's SSE3 kernels, 2.5-4x slower): the OPENBLAS_CORETYPE that
// selects the widest this CPU runs, "SkylakeX" (AVX-512) or "Haswell" (AVX2); "" otherwise (another
// BLAS, or AVX2 kernels or wider already).
std::string wider_blas_core();

// For a scope (benchmarks comparing backends, tests).
class ScopedBackend {
 public:
  explicit ScopedBackend(Backend b) : m_previous(backend()) { set_backend(b); }
  ~ScopedBackend() { set_backend(m_previous); }
  ScopedBackend(const ScopedBackend&) = delete;
  ScopedBackend& operator=(const ScopedBackend&) = delete;

 private:
  Backend m_previous;
};

// As LibTorch's functions of the same names (2-d a, b; 3-d for the batched ones, or 4-d below).
torch::Tensor mm(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor addmm(const torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b);  // c broadcast
// In place; where a or b carries a vmap batch dimension and c does not, c is assigned the
// out-of-place result instead (a batched sum does not fit in c).
torch::Tensor& addmm_(torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b);
// bmm also takes 4-d batches ([B, H, M, K] by [B, H, K, N], any strides outside each matrix's rows:
// attention's heads as views of [B, T, H, d] projections); its result is contiguous. An operand of
// G heads, G dividing H, serves each group of H / G consecutive heads (grouped-query attention's keys
// and values; the result has the most heads). bmm_out writes a b into c (3-d or 4-d, rows of c
// contiguous, any other strides), e.g. a [B, T, H, d] buffer seen as [B, H, T, d]; a c of fewer heads
// than the product receives each group's sum over its heads (keys' and values' gradients), summed in
// head order inside the products. A triangle other than None (square matrices: attention's causal
// products, small_gemm.h) says which terms are zero or which results unwanted: those are skipped where
// small_gemm's kernel runs the product (float32, the CPU has it), computed as usual elsewhere.
using small_gemm::Triangle;
torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b, Triangle triangle = Triangle::None);
torch::Tensor& bmm_out(torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b,
                       Triangle triangle = Triangle::None);
torch::Tensor& baddbmm_(torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b);
// One float32 product on raw storage, C = A B (accumulate: C += A B): A's element (i, k) at
// a[i * a_row + k * a_col], B's (k, n) at b[k * b_row + n * b_col], each with one of its strides 1, C's
// rows ldc apart. small_gemm's kernel where a triangle is given and it takes the product
// (small_gemm::takes); oneDNN's sgemm else. Call only where raw_products() (the oneDNN backend in force).
bool raw_products();
void product(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_row, int64_t a_col, const float* b,
             int64_t b_row, int64_t b_col, float* c, int64_t ldc, bool accumulate, Triangle triangle = Triangle::None);
// A fresh float32 [rows, cols] matrix (uninitialized) for a product to read transposed (a weight
// gradient's dy^T): where its rows would lie a multiple of 4 KB apart (cols a multiple of 1024) they are
// 16 values further apart, a view into a wider buffer. oneDNN's sgemm reading a transposed operand whose
// rows are 4 KB-multiples apart ran 1.1-1.4x slower (rows of 1024-3072 floats, cold operands, 1 and 2
// threads; a cache-set aliasing): the padded rows give the same bits.
torch::Tensor padded_rows(int64_t rows, int64_t cols, const torch::TensorOptions& options);
// x W^T + b over x's last dimension (b may be undefined).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b = {});

}  // namespace bs::gemm
