// The CPU driver of the update functors: contiguous raw pointers split across LibTorch's intra-op
// threads, a plain inner loop the compiler vectorizes. The build targets baseline x86-64 (SSE2); where
// the CPU has AVX-512F the same loop runs compiled for it (16 floats per instruction, masked selects).
// Every file that includes this one is compiled with -ffp-contract=off (optimizers/CMakeLists.txt):
// AVX-512 brings fused multiply-adds, and a contracted a * b + c would round differently from the
// scalar references and the SSE2 loop. Both variants give the same bits.
#pragma once
#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <type_traits>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

namespace bs {

constexpr int64_t kGrain = 1 << 15;

// Which compiled variant the loops here and the clipping threshold's pass run: the widest the CPU has
// (the default), or the baseline one everywhere (the tests compare the two bit for bit).
enum class LoopVariant { widest, baseline };
inline std::atomic<LoopVariant> g_loop_variant{LoopVariant::widest};
inline void set_loop_variant(LoopVariant v) { g_loop_variant.store(v, std::memory_order_relaxed); }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define BS_LOOP_AVX512 1
// f(i) for i in [begin, end), compiled for AVX-512F; f (compiled for the baseline) is inlined into it.
template <class F>
__attribute__((target("avx512f"))) void elements_avx512(const F& f, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) f(i);
}
#endif

// Whether the loops run their AVX-512F variant: the CPU has it (asked once) and the baseline is not asked for.
inline bool use_avx512() {
#ifdef BS_LOOP_AVX512
  static const bool has = __builtin_cpu_supports("avx512f");
  return has && g_loop_variant.load(std::memory_order_relaxed) == LoopVariant::widest;
#else
  return false;
#endif
}

// f(i) for i in [begin, end) on this thread, in the variant use_avx512() says.
template <class F>
void elements(const F& f, int64_t begin, int64_t end) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return elements_avx512(f, begin, end);
#endif
  for (int64_t i = begin; i < end; ++i) f(i);
}

// f(i) for i in [0, n), in parallel chunks.
template <class F>
void parallel_elements(int64_t n, const F& f) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { elements(f, begin, end); });
}

// sum of x[k]^2 in the tensor's own dtype (as the official torch.mean(g*g)) with 32 independent
// partial sums (lane j takes x[k + j], k stepping by 32), summed pairwise (lane j + lane j + w for
// w = 16, 8, 4, 2, 1), then the tail: the chain of dependent adds, not the memory, would otherwise
// bound Adam-mini's block reductions. Deterministic for a given n, and the same bits in both variants.
template <class T>
T finish_lanes(T* acc, const T* x, int64_t k, int64_t n) {  // the pairwise sum of acc[32], then x[k, n)'s squares
  for (int w = 16; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  T tail = 0;
  for (; k < n; ++k) tail += x[k] * x[k];
  return acc[0] + tail;
}

#ifdef BS_LOOP_AVX512
// The 32 float lanes as two 16-float registers (GCC's own vectorization of the lane loop for AVX-512
// shuffles lanes and runs at half the speed).
__attribute__((target("avx512f"))) inline float sum_squares_avx512(const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    const __m512 v0 = _mm512_loadu_ps(x + k), v1 = _mm512_loadu_ps(x + k + 16);
    a0 = _mm512_add_ps(a0, _mm512_mul_ps(v0, v0));
    a1 = _mm512_add_ps(a1, _mm512_mul_ps(v1, v1));
  }
  float acc[32];
  _mm512_storeu_ps(acc, a0);
  _mm512_storeu_ps(acc + 16, a1);
  return finish_lanes(acc, x, k, n);
}
#endif

template <class T>
T sum_squares(const T* x, int64_t n) {
#ifdef BS_LOOP_AVX512
  if constexpr (std::is_same_v<T, float>)
    if (use_avx512()) return sum_squares_avx512(x, n);
#endif
  T acc[32] = {};
  int64_t k = 0;
  for (; k + 32 <= n; k += 32)
    for (int j = 0; j < 32; ++j) acc[j] += x[k + j] * x[k + j];
  return finish_lanes(acc, x, k, n);
}

}  // namespace bs
