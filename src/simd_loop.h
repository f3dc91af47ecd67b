// Elementwise loops compiled twice: for the build's baseline x86-64 target (SSE2) and, where the CPU has
// AVX-512F, for it (16 floats per instruction, masked selects), chosen at run time. The functor is
// compiled for the baseline and inlined into each variant. A file whose loops go through here and must
// give the same bits in both variants is compiled with -ffp-contract=off: AVX-512 brings fused
// multiply-adds, and a contracted a * b + c rounds differently from the baseline loop. The optimizers'
// drivers (optimizers/cpu_loop.h) and the models' row kernels share it.
#pragma once
#include <atomic>
#include <cstdint>

namespace bs {

// Which compiled variant the loops here, the optimizers' loops and the clipping threshold's pass run: the widest the
// CPU has (the default), or the baseline one everywhere (the tests compare the two bit for bit).
enum class LoopVariant { widest, baseline };
inline std::atomic<LoopVariant> g_loop_variant{LoopVariant::widest};
inline void set_loop_variant(LoopVariant v) { g_loop_variant.store(v, std::memory_order_relaxed); }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define BS_LOOP_AVX512 1
// f(i) for i in [begin, end), compiled for AVX-512F; f (compiled for the baseline) is inlined into it.
// Both variants run a local copy of f: a store through the loop's pointers could otherwise alias the
// captures of the caller's f (a captured float constant), which the loop then reloads every element
// and does not vectorize.
template <class F>
__attribute__((target("avx512f"))) void elements_avx512(const F& f, int64_t begin, int64_t end) {
  const F g = f;
  for (int64_t i = begin; i < end; ++i) g(i);
}
#endif

// Whether the loops run their AVX-512F variant: the CPU has it (asked once; with BMI2, which every
// AVX-512 CPU has and the bracket pass uses) and the baseline is not asked for.
inline bool use_avx512() {
#ifdef BS_LOOP_AVX512
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("bmi2");
  return has && g_loop_variant.load(std::memory_order_relaxed) == LoopVariant::widest;
#else
  return false;
#endif
}

#ifdef BS_LOOP_AVX512
// f() compiled for AVX-512F: everything it calls that can be inlined is (f's loops, e.g. a row
// kernel's passes, then vectorize for it).
template <class F>
__attribute__((target("avx512f"), flatten)) void call_avx512(const F& f) {
  f();
}
#endif

// f() in the variant use_avx512() says: for a kernel whose loops are not one element at a time.
template <class F>
void in_variant(const F& f) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return call_avx512(f);
#endif
  f();
}

// f(i) for i in [begin, end) on this thread, in the variant use_avx512() says.
template <class F>
void elements(const F& f, int64_t begin, int64_t end) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return elements_avx512(f, begin, end);
#endif
  const F g = f;
  for (int64_t i = begin; i < end; ++i) g(i);
}

}  // namespace bs
