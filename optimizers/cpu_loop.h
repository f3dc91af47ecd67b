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

#include "simd_loop.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

namespace bs {

constexpr int64_t kGrain = 1 << 15;

// Two streams stepped together, kWayStep elements of one, then of the other: twice the streams in flight
// for the hardware prefetchers. On one core of the machine we measure on, a 5-word in-place stream
// (SGD-SaI's p, g, buf) ran 5-9 % faster as two halves stepped this way, while AdamW's 7-word stream did
// not gain and at some distances between the halves ran 2x slower (14 streams), so only the 5-word
// updates use it (README, "bench optim"). The order of elements does not change any element's bits.
constexpr int64_t kWayStep = 16;
// f0(i) and f1(i) for i in [0, n), stepped together, e.g. two rows of a tensor that share a per-column
// factor. The functors are copied in: locals the compiler keeps in registers (through a reference, a
// store to a T might overwrite one of their T members, and every step would reload them and check for
// overlap).
// The stepping itself, over [0, n) for n a multiple of kWayStep.
template <class F0, class F1>
__attribute__((always_inline)) inline void two_streams_steps(const F0 f0, const F1 f1, int64_t n) {
  for (int64_t k = 0; k < n; k += kWayStep) {
#pragma GCC ivdep
    for (int64_t j = 0; j < kWayStep; ++j) f0(k + j);
#pragma GCC ivdep
    for (int64_t j = 0; j < kWayStep; ++j) f1(k + j);
  }
}
template <class F0, class F1>
__attribute__((always_inline)) inline void two_streams_body(const F0 f0, const F1 f1, int64_t n) {
  const int64_t stepped = n / kWayStep * kWayStep;
  two_streams_steps(f0, f1, stepped);
  for (int64_t k = stepped; k < n; ++k) {
    f0(k);
    f1(k);
  }
}
#ifdef BS_LOOP_AVX512
template <class F0, class F1>
__attribute__((target("avx512f"))) void two_streams_avx512(const F0& f0, const F1& f1, int64_t n) {
  two_streams_body(f0, f1, n);
}
#endif

// f(i) for i in [begin, end) as two halves stepped together (two_streams_steps over the halves' first
// multiple of kWayStep elements, then the rest in order).
template <class F>
__attribute__((always_inline)) inline void two_way_body(const F f, int64_t begin, int64_t end) {
  const int64_t half = (end - begin) / 2 / kWayStep * kWayStep, mid = begin + half;
  two_streams_steps([f, begin](int64_t k) { f(begin + k); }, [f, mid](int64_t k) { f(mid + k); }, half);
  for (int64_t i = mid + half; i < end; ++i) f(i);
}
#ifdef BS_LOOP_AVX512
template <class F>
__attribute__((target("avx512f"))) void two_way_avx512(const F& f, int64_t begin, int64_t end) {
  two_way_body(f, begin, end);
}
#endif

// elements(f, begin, end) as two_way_body's two halves stepped together, in the variant use_avx512() says.
template <class F>
void elements_two_way(const F& f, int64_t begin, int64_t end) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return two_way_avx512(f, begin, end);
#endif
  two_way_body(f, begin, end);
}

// two_streams_body in the variant use_avx512() says.
template <class F0, class F1>
void two_streams(const F0& f0, const F1& f1, int64_t n) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return two_streams_avx512(f0, f1, n);
#endif
  two_streams_body(f0, f1, n);
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

// acc += x[k, k + C)^2, eight values per lane at a time (sum_squares' order).
template <int C, class T>
__attribute__((always_inline)) inline void add_squares(typename Lanes8<T>::type& acc, const T* x) {
  for (int q = 0; q < C; q += 8) {
    typename Lanes8<T>::type v;
    std::memcpy(&v, x + q, sizeof v);
    acc += v * v;
  }
}

// sum_squares' ending, from its eight partial sums acc over x[0, k): the rest of x[0, n) in eights, a
// scalar tail, and the partial sums added in its order.
template <class T>
__attribute__((always_inline)) inline T finish_sum_squares(typename Lanes8<T>::type acc, const T* x, int64_t k,
                                                           int64_t n) {
  for (; k + 8 <= n; k += 8) add_squares<8>(acc, x + k);
  T tail = 0;
  for (; k < n; ++k) tail += x[k] * x[k];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// sum_squares(x, n)'s bits as vector code inlined into its caller (a compiled variant's loop):
// sum_squares' array of eight sums, compiled into the AVX-512 variant, becomes lane permutations at
// half the speed; sum_squares stays the plain statement of the order, the tests' reference.
template <class T>
__attribute__((always_inline)) inline T sum_squares_inline(const T* x, int64_t n) {
  return finish_sum_squares(typename Lanes8<T>::type{}, x, 0, n);
}

// Adam-mini's pass over a thread's run of equal blocks [s, e) of bs elements each: block(b, sum) is
// called once per block with the sum of squares of x over it (sum_squares' bits) and returns the
// closure f(k) that updates the block's element k. One pass over memory, one way with software
// prefetch: block b + 1's sum is taken in the loop that updates block b (the run's first block is
// summed alone), so every stream is read once and all of them at a time. Everything, the per-block
// work included, is compiled in one variant, so the constants are set up once per run, not once per
// block.
//
// Until the nineteenth session blocks under kPrefetchedBlock = 1,024 values went as two halves stepped
// together without prefetch (two_way_body's reason). On the 2-core Xeon (family 6, model 167) of
// 2026-12-04, with every block size on the prefetched way, Adam-mini's step on bench optim's set (mostly
// rows of 512 values) took 22.0-22.3 ms against 23.0-24.0 at 1 thread and 11.1 against 12.1-12.3 at 2
// (alternating runs, docs/bench_optim_log.md); on the Zen 5 VM the thirteenth session measured the
// prefetched way from 256 values within the noise of the two halves. The two halves' reason held there:
// with block b + 1 summed a whole block before its update read it again, from 1,024 values on it had
// left L1 while p, m and the other way streamed in (1.09-1.22x SGD-SaI's time at 2,048 and 32,768
// values against 0.97-1.04 for the prefetched way). Measured there and not taken: two ways with every
// stream prefetched, steps of 32 or 64 values, prefetch distances of 256 or 1,024 values.
//
// The pass itself: the update of block b, kWayStep values at a time, with block b + 1's sum taken in
// the same loop (the same add_squares order: sum_squares' bits), and each stream (x for the sums,
// `streams` for what the update reads and writes, indexed as x) asked for kBlockPrefetch values ahead,
// across block boundaries (a run's blocks lie end to end). A prefetch past the end of an array is a
// hint and does not fault.
constexpr int64_t kBlockPrefetch = 512;  // values (2 KB of float)
template <class T, class B, size_t S>
__attribute__((always_inline)) inline void block_run_prefetched_body(const B block, const T* x,
                                                                     const std::array<const T*, S> streams, int64_t bs,
                                                                     int64_t s, int64_t e) {
  T sq = sum_squares_inline(x + s * bs, bs);  // the run's first block is summed alone
  for (int64_t b = s; b < e; ++b) {
    const auto f = block(b, sq);
    if (b + 1 == e) {
      for (int64_t k = 0; k < bs; ++k) f(k);
      break;
    }
    const T* next = x + (b + 1) * bs;
    const int64_t at = b * bs;
    typename Lanes8<T>::type acc = {};
    int64_t k = 0;
    for (; k + kWayStep <= bs; k += kWayStep) {
      __builtin_prefetch(next + k + kBlockPrefetch);
      for (const T* st : streams) __builtin_prefetch(st + at + k + kBlockPrefetch, 1);
      add_squares<kWayStep>(acc, next + k);
#pragma GCC ivdep
      for (int j = 0; j < kWayStep; ++j) f(k + j);
    }
    for (int64_t j = k; j < bs; ++j) f(j);
    sq = finish_sum_squares(acc, next, k, bs);
  }
}
#ifdef BS_LOOP_AVX512
template <class T, class B, size_t S>
__attribute__((target("avx512f"))) void block_run_prefetched_avx512(const B& block, const T* x,
                                                                    const std::array<const T*, S>& streams, int64_t bs,
                                                                    int64_t s, int64_t e) {
  block_run_prefetched_body(block, x, streams, bs, s, e);
}
#endif

// A run of blocks [s, e) of bs values each (`streams`: the arrays the update reads and writes, indexed
// as x), in the variant use_avx512() says; every block's sum has sum_squares' bits.
template <class T, class B, size_t S>
void block_runs(const B& block, const T* x, const std::array<const T*, S>& streams, int64_t bs, int64_t s, int64_t e) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return block_run_prefetched_avx512(block, x, streams, bs, s, e);
#endif
  block_run_prefetched_body(block, x, streams, bs, s, e);
}

// One tensor's share of a step that updates many tensors: `units` units of `unit_numel` elements
// each (an element, one of Adam-mini's blocks, or a whole tensor: its Conv1D column blocks), and
// run(begin, end), which updates units [begin, end).
struct TensorJob {
  int64_t units = 0, unit_numel = 1;
  std::function<void(int64_t, int64_t)> run;
};

// How a job's thread share is streamed: as one run, or as two halves stepped together (two_way_body).
enum class Ways { one, two };

// f(k) for every element k of a tensor of n elements, as a job.
template <class F>
TensorJob elementwise_job(int64_t n, F f, Ways ways = Ways::one) {
  if (ways == Ways::two) return {n, 1, [f](int64_t begin, int64_t end) { elements_two_way(f, begin, end); }};
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
