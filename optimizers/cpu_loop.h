// The CPU driver of the update functors: contiguous raw pointers split across LibTorch's intra-op
// threads, a plain inner loop the compiler vectorizes. The build targets baseline x86-64 (SSE2); where
// the CPU has AVX-512F the same loop runs compiled for it (16 floats per instruction, masked selects).
// Every optimizer file that includes this one is compiled with -ffp-contract=off
// (optimizers/CMakeLists.txt): AVX-512 brings fused multiply-adds, and a contracted a * b + c would
// round differently from the scalar references and the SSE2 loop. Both variants give the same bits
// (FusedOptimizers.WideAndBaselineLoopsGiveTheSameBits fails otherwise). bench_optim.cpp's y += x
// multiplies nothing and keeps the shared precompiled header.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

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

// sum of x[k]^2 in the tensor's own dtype (as the official torch.mean(g*g)) with eight independent
// partial sums: the chain of dependent adds, not the memory, would otherwise bound Adam-mini's block
// reductions. Deterministic for a given n. (Baseline code only: compiled for AVX-512, GCC 12 turns
// the eight sums into lane permutations and the reduction runs at half the speed.)
template <class T>
T sum_squares(const T* x, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[k + j] * x[k + j];
  T tail = 0;
  for (; k < n; ++k) tail += x[k] * x[k];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Eight T in one vector (GCC's vector extension): sum_squares' eight partial sums as one register.
template <class T>
struct Lanes8;
template <>
struct Lanes8<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Lanes8<double> {
  typedef double type __attribute__((vector_size(64)));
};

// f(k) for k in [0, n) while summing x[0, n)^2 with sum_squares' partial sums, in its order (the
// same bits): lane j of the accumulator adds x[j], x[j + 8], ... in turn. Chunks of 64: the sum's
// eight vector adds, then f over the same 64 indices (a loop the compiler vectorizes).
template <class T, class F>
__attribute__((always_inline)) inline T elements_and_sum_squares_body(const F& f, int64_t n, const T* x) {
  typename Lanes8<T>::type acc = {};
  int64_t k = 0;
  for (; k + 64 <= n; k += 64) {
    for (int q = 0; q < 64; q += 8) {
      typename Lanes8<T>::type v;
      std::memcpy(&v, x + k + q, sizeof v);
      acc += v * v;
    }
    for (int j = 0; j < 64; ++j) f(k + j);
  }
  for (int64_t j = k; j < n; ++j) f(j);
  for (; k + 8 <= n; k += 8) {
    typename Lanes8<T>::type v;
    std::memcpy(&v, x + k, sizeof v);
    acc += v * v;
  }
  T tail = 0;
  for (; k < n; ++k) tail += x[k] * x[k];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

#ifdef BS_LOOP_AVX512
template <class T, class F>
__attribute__((target("avx512f"))) T elements_and_sum_squares_avx512(const F& f, int64_t n, const T* x) {
  return elements_and_sum_squares_body(f, n, x);
}
#endif

// elements(f, 0, n) and sum_squares(x, n) in one pass, in the variant use_avx512() says.
template <class T, class F>
T elements_and_sum_squares(const F& f, int64_t n, const T* x) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return elements_and_sum_squares_avx512(f, n, x);
#endif
  return elements_and_sum_squares_body(f, n, x);
}

// One tensor's share of a step that updates many tensors: `units` units of `unit_numel` elements
// each (an element, or one of Adam-mini's blocks), and run(begin, end), which updates units [begin, end).
struct TensorJob {
  int64_t units = 0, unit_numel = 1;
  std::function<void(int64_t, int64_t)> run;
};

// f(k) for every element k of a tensor of n elements, as a job.
template <class F>
TensorJob elementwise_job(int64_t n, F f) {
  return {n, 1, [f](int64_t begin, int64_t end) { elements(f, begin, end); }};
}

// Every job in one parallel region: the jobs' elements laid end to end and cut into one contiguous run
// per thread, at unit boundaries (each thread's run starts at the first unit starting at or after its
// equal share). A thread streams through its run across the tensors instead of the threads meeting at
// the end of every tensor, and tensors below the grain no longer run on one thread while the others wait.
// A unit is run whole by one thread, so the bits do not depend on the thread count.
inline void run_jobs(const std::vector<TensorJob>& jobs) {
  int64_t total = 0;
  for (const auto& j : jobs) total += j.units * j.unit_numel;
  if (total == 0) return;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), total / kGrain));
  struct Place {
    size_t job;
    int64_t unit;
  };
  auto start_of = [&](int64_t t) {  // where thread t's run starts; t == threads: the end
    const int64_t target = static_cast<int64_t>(static_cast<__int128>(total) * t / threads);
    int64_t offset = 0;
    for (size_t j = 0; j < jobs.size(); ++j) {
      const int64_t n = jobs[j].units * jobs[j].unit_numel;
      if (target < offset + n) {
        const int64_t unit = (target - offset + jobs[j].unit_numel - 1) / jobs[j].unit_numel;
        return unit < jobs[j].units ? Place{j, unit} : Place{j + 1, 0};
      }
      offset += n;
    }
    return Place{jobs.size(), 0};
  };
  at::parallel_for(0, threads, 1, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      const Place from = start_of(t), to = start_of(t + 1);
      for (size_t j = from.job; j <= to.job && j < jobs.size(); ++j) {
        const int64_t begin = j == from.job ? from.unit : 0, end = j == to.job ? to.unit : jobs[j].units;
        if (end > begin) jobs[j].run(begin, end);
      }
    }
  });
}

// sum_squares over n values in kGrain pieces taken in parallel and added in order: the same bits at
// every thread count (at::parallel_reduce's partial sums follow the thread count).
template <class T>
T parallel_sum_squares(const T* x, int64_t n) {
  const int64_t pieces = (n + kGrain - 1) / kGrain;
  std::vector<T> part(static_cast<size_t>(pieces));
  at::parallel_for(0, pieces, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) part[q] = sum_squares(x + q * kGrain, std::min(kGrain, n - q * kGrain));
  });
  T sum = 0;
  for (const T v : part) sum += v;
  return sum;
}

}  // namespace bs
