// oneDNN and OpenBLAS are looked up at run time (both come with LibTorch's shared libraries), so a
// LibTorch without them works unchanged, on LibTorch's products.
#include "gemm.h"

#include <ATen/BatchedTensorImpl.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "errors.h"
#include "small_gemm.h"

namespace bs::gemm {

namespace {

// oneDNN's C API (dnnl.h): row-major C = alpha op(A) op(B) + beta C; returns dnnl_success (0).
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
struct DnnlVersion {
  int major, minor, patch;
  const char* hash;
  unsigned cpu_runtime, gpu_runtime;
};

SgemmFn sgemm() {
  static const SgemmFn f = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return f;
}

Backend initial_backend() {
  const char* env = std::getenv("BLOCKSHARP_GEMM");
  const std::string choice = env ? env : "onednn";
  if (choice == "libtorch") return Backend::LibTorch;
  if (choice != "onednn") throw UserError("BLOCKSHARP_GEMM: expected onednn or libtorch, got '" + choice + "'");
  return sgemm() ? Backend::OneDnn : Backend::LibTorch;
}

Backend& current() {
  static Backend b = initial_backend();
  return b;
}

// True where oneDNN computes this product: float32 CPU operands with storage (not vmap-batched),
// nothing empty, and no autograd recording (a product autograd must differentiate goes through
// LibTorch's differentiable ops).
bool fast(std::initializer_list<const torch::Tensor*> ts) {
  if (current() != Backend::OneDnn) return false;
  const bool recording = torch::GradMode::is_enabled();
  for (const auto* t : ts) {
    if (!t->defined()) continue;
    if (at::isBatchedTensor(*t)) return false;
    if (t->scalar_type() != torch::kFloat || !t->device().is_cpu() || t->numel() == 0) return false;
    if (recording && t->requires_grad()) return false;
  }
  return true;
}

// A matrix operand (the last two dimensions of t, which may be transposed): oneDNN's transpose
// flag and leading dimension, or a contiguous copy where the strides fit neither.
struct Operand {
  torch::Tensor t;
  char trans;
  int64_t ld;
};
Operand operand(const torch::Tensor& t) {
  const int64_t d = t.dim(), rows = t.size(d - 2), cols = t.size(d - 1);
  const int64_t s0 = t.stride(d - 2), s1 = t.stride(d - 1);
  if (s1 == 1 && s0 >= std::max<int64_t>(cols, 1)) return {t, 'N', s0};
  if (s0 == 1 && s1 >= std::max<int64_t>(rows, 1)) return {t, 'T', s1};
  const auto c = t.contiguous();
  return {c, 'N', std::max<int64_t>(cols, 1)};
}

bool writable_rows(const torch::Tensor& c) {
  const int64_t d = c.dim();
  return c.stride(d - 1) == 1 && c.stride(d - 2) >= std::max<int64_t>(c.size(d - 1), 1);
}

// The heads of a product of 4-d batches: the most of its operands' and result's ([B, H, ...]); 1 else.
int64_t product_heads(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
  return c.dim() == 4 ? std::max({a.size(1), b.size(1), c.size(1)}) : 1;
}

// Where product i of the B x H products (H = product_heads) finds its matrix in t, as an offset in
// elements: 3-d batches by i, 4-d ones through any strides, a tensor of G < H heads serving each group
// of H / G consecutive heads (grouped-query attention's keys and values).
int64_t batch_offset(const torch::Tensor& t, int64_t i, int64_t H) {
  if (t.dim() == 3) return i * t.stride(0);
  if (t.dim() == 4) return i / H * t.stride(0) + i % H / (H / t.size(1)) * t.stride(1);
  return 0;
}

// C[i] = A[i] B[i] + beta C[i] (beta 0 or 1) for every product i (one call per matrix); where c has
// fewer heads than the product, each of its matrices is the sum over its group's heads, accumulated in
// head order (a sum inside the products, the same bits at any thread count).
void run(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c, float beta,
         Triangle triangle = Triangle::None) {
  const auto A = operand(a), B = operand(b);
  const int64_t d = c.dim(), M = c.size(d - 2), N = c.size(d - 1), K = a.size(a.dim() - 1);
  const int64_t H = product_heads(a, b, c), group = d == 4 ? H / c.size(1) : 1;
  const int64_t outputs = c.numel() / std::max<int64_t>(M * N, 1);
  const float *pa = A.t.data_ptr<float>(), *pb = B.t.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  const int64_t ldc = c.stride(d - 2);
  const bool at = A.trans == 'N', bt = B.trans == 'N';  // (row, column) strides (ld, 1), or (1, ld)
  auto one = [&](int64_t i, float beta_i) {
    gemm::product(M, N, K, pa + batch_offset(A.t, i, H), at ? A.ld : 1, at ? 1 : A.ld, pb + batch_offset(B.t, i, H),
                  bt ? B.ld : 1, bt ? 1 : B.ld, pc + batch_offset(c, i, H), ldc, beta_i != 0.0f, triangle);
  };
  auto output = [&](int64_t o) {  // c's matrix o: products o (no groups), or its group's in order
    const int64_t first = group == 1 ? o : o / c.size(1) * H + o % c.size(1) * group;
    for (int64_t r = 0; r < group; ++r) one(first + r, r == 0 ? beta : 1.0f);
  };
  if (outputs == 1) return output(0);
  at::parallel_for(0, outputs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) output(o);
  });
}

// The same products in LibTorch's ops (double, autograd, other devices): operands of fewer heads
// repeated for their groups, and a result of fewer heads the sum over each group.
torch::Tensor grouped_matmul(const torch::Tensor& a, const torch::Tensor& b, int64_t c_heads) {
  if (a.dim() != 4) return torch::matmul(a, b);
  const int64_t H = std::max({a.size(1), b.size(1), c_heads});
  auto full = [&](const torch::Tensor& t) { return t.size(1) == H ? t : t.repeat_interleave(H / t.size(1), 1); };
  auto y = torch::matmul(full(a), full(b));
  if (c_heads == H) return y;
  return y.view({y.size(0), c_heads, H / c_heads, y.size(2), y.size(3)}).sum(2);
}

}  // namespace

Backend backend() { return current(); }
void set_backend(Backend b) { current() = (b == Backend::OneDnn && !sgemm()) ? Backend::LibTorch : b; }
bool onednn_available() { return sgemm() != nullptr; }
bool raw_products() { return current() == Backend::OneDnn; }

void product(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_row, int64_t a_col, const float* b,
             int64_t b_row, int64_t b_col, float* c, int64_t ldc, bool accumulate, Triangle triangle) {
  if (triangle != Triangle::None && small_gemm::takes(N, K))
    return small_gemm::product(M, N, K, a, a_row, a_col, b, b_row, b_col, c, ldc, accumulate, triangle);
  // Stored by rows (unit column stride, rows at least a row apart), else transposed (unit row stride).
  const bool an = a_col == 1 && a_row >= std::max<int64_t>(K, 1), bn = b_col == 1 && b_row >= std::max<int64_t>(N, 1);
  const int status = sgemm()(an ? 'N' : 'T', bn ? 'N' : 'T', M, N, K, 1.0f, a, an ? a_row : a_col, b,
                             bn ? b_row : b_col, accumulate ? 1.0f : 0.0f, c, ldc);
  TORCH_CHECK(status == 0, "oneDNN sgemm failed (status ", status, ") on ", M, "x", K, " by ", K, "x", N);
}

std::string blas_core() {
  auto corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? std::string(corename()) : std::string();
}

std::string wider_blas_core() {
  const std::string core = blas_core();
  const std::vector<std::string> with_avx2 = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
  if (core.empty() || std::count(with_avx2.begin(), with_avx2.end(), core) > 0) return "";
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return "";
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return avx512 ? "SkylakeX" : "Haswell";
}

std::string describe(Backend b) {
  if (b == Backend::OneDnn && sgemm()) {
    auto version = reinterpret_cast<const DnnlVersion* (*)()>(dlsym(RTLD_DEFAULT, "dnnl_version"));
    if (!version) return "oneDNN";
    const auto* v = version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }
  const auto core = blas_core();
  return core.empty() ? "LibTorch" : "LibTorch (OpenBLAS " + core + ")";
}

torch::Tensor mm(const torch::Tensor& a, const torch::Tensor& b) {
  if (!fast({&a, &b})) return torch::mm(a, b);
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "mm: shapes ", a.sizes(), " and ", b.sizes());
  auto c = torch::empty({a.size(0), b.size(1)}, a.options());
  run(a, b, c, 0.0f);
  return c;
}

torch::Tensor addmm(const torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b) {
  if (!fast({&c, &a, &b})) return torch::addmm(c, a, b);
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "addmm: shapes ", a.sizes(), " and ", b.sizes());
  auto out = torch::empty({a.size(0), b.size(1)}, a.options());
  // A fresh result: c itself is never written. A bias row (a linear layer's) is copied into each row
  // directly: the broadcast copy_ took 14 ms of a 440 ms gpt2-small-cpu step at 1 thread (32 calls).
  // (fast() has made every operand float32 and non-empty.)
  if (c.dim() == 1 && c.is_contiguous() && c.size(0) == out.size(1)) {
    const float* row = c.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const int64_t n = out.size(1);
    at::parallel_for(0, out.size(0), std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) std::memcpy(o + r * n, row, static_cast<size_t>(n) * sizeof(float));
    });
  } else {
    out.copy_(c.expand(out.sizes()));
  }
  run(a, b, out, 1.0f);
  return out;
}

// A batched operand (several products at once) cannot accumulate into an unbatched c in place: c
// becomes the out-of-place sum instead (the callers' c are fresh temporaries).
bool widens(const torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b) {
  return !at::isBatchedTensor(c) && (at::isBatchedTensor(a) || at::isBatchedTensor(b));
}

torch::Tensor& addmm_(torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b) {
  if (widens(c, a, b)) return c = torch::addmm(c, a, b);
  if (!fast({&c, &a, &b}) || !writable_rows(c)) return c.addmm_(a, b);
  TORCH_CHECK(
      a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0) && c.size(0) == a.size(0) && c.size(1) == b.size(1),
      "addmm_: shapes ", c.sizes(), ", ", a.sizes(), " and ", b.sizes());
  run(a, b, c, 1.0f);
  return c;
}

// Whether a and b are batches of matrices that can be multiplied into c_heads heads (4-d; 0: as many
// as the most of a and b): the same leading sizes, or for 4-d the same B and head counts that each
// divide the product's.
bool batch_shapes(const torch::Tensor& a, const torch::Tensor& b, int64_t c_heads = 0) {
  const int64_t d = a.dim();
  if (!((d == 3 || d == 4) && b.dim() == d && a.size(0) == b.size(0) && a.size(d - 1) == b.size(d - 2))) return false;
  if (d == 3) return true;
  const int64_t H = std::max({a.size(1), b.size(1), c_heads});
  auto divides = [&](int64_t h) { return h > 0 && H % h == 0; };
  return divides(a.size(1)) && divides(b.size(1)) && (c_heads == 0 || divides(c_heads));
}

torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b, Triangle triangle) {
  TORCH_CHECK(batch_shapes(a, b), "bmm: shapes ", a.sizes(), " and ", b.sizes());
  if (!fast({&a, &b})) return a.dim() == 4 ? grouped_matmul(a, b, std::max(a.size(1), b.size(1))) : torch::bmm(a, b);
  auto sizes = a.sizes().vec();
  if (a.dim() == 4) sizes[1] = std::max(a.size(1), b.size(1));
  sizes.back() = b.size(-1);
  auto c = torch::empty(sizes, a.options());
  run(a, b, c, 0.0f, triangle);
  return c;
}

torch::Tensor& bmm_out(torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b, Triangle triangle) {
  const int64_t d = a.dim();
  TORCH_CHECK(c.dim() == d && batch_shapes(a, b, d == 4 ? c.size(1) : 0) && c.size(0) == a.size(0) &&
                  c.size(d - 2) == a.size(d - 2) && c.size(d - 1) == b.size(d - 1),
              "bmm_out: shapes ", c.sizes(), ", ", a.sizes(), " and ", b.sizes());
  if (!fast({&c, &a, &b}) || !writable_rows(c)) return c.copy_(grouped_matmul(a, b, d == 4 ? c.size(1) : 0));
  run(a, b, c, 0.0f, triangle);
  return c;
}

torch::Tensor& baddbmm_(torch::Tensor& c, const torch::Tensor& a, const torch::Tensor& b) {
  if (widens(c, a, b)) return c = torch::baddbmm(c, a, b);
  if (!fast({&c, &a, &b}) || !writable_rows(c)) return c.baddbmm_(a, b);
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1) &&
                  c.size(0) == a.size(0) && c.size(1) == a.size(1) && c.size(2) == b.size(2),
              "baddbmm_: shapes ", c.sizes(), ", ", a.sizes(), " and ", b.sizes());
  run(a, b, c, 1.0f);
  return c;
}

torch::Tensor padded_rows(int64_t rows, int64_t cols, const torch::TensorOptions& options) {
  if (cols == 0 || cols % 1024 != 0) return torch::empty({rows, cols}, options);
  return torch::empty({rows, cols + 16}, options).narrow(1, 0, cols);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
  if (!fast({&x, &W, &b})) return at::linear(x, W, b);
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = W.size(0);
  const auto x2 = x.reshape({-1, x.size(-1)});
  const auto y = b.defined() ? gemm::addmm(b, x2, W.t()) : gemm::mm(x2, W.t());
  return y.view(out_sizes);
}

}  // namespace bs::gemm
