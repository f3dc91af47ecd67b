// The CPU loop itself (cpu_loop.h): its parallel chunks really run on LibTorch's threads, Adam-mini's
// block runs take each block's sum with sum_squares' bits and update each element once, the two-way
// element loop visits each index once, and run_jobs runs every unit of a step's jobs once, in equal
// shares. Compiled like the optimizers (-ffp-contract=off, tests/CMakeLists.txt), so the wide variant
// here rounds as theirs does.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cpu_loop.h"

namespace bs {
namespace {

// Our loops are parallel only if this code is compiled with OpenMP (at::parallel_for is inline and
// serial otherwise, as it was in every object until the build added -fopenmp): at 2 threads the
// chunks of a large range run on two workers.
TEST(CpuLoop, ParallelForRunsOnTheThreads) {
#if defined(__GNUC__) && !defined(__clang__)
  const int previous = at::get_num_threads();
  at::set_num_threads(2);
  std::atomic<int> seen{0};
  at::parallel_for(0, 4 * kGrain, kGrain, [&](int64_t, int64_t) { seen |= 1 << at::get_thread_num(); });
  at::set_num_threads(previous);
  EXPECT_EQ(seen.load(), 3) << "at::parallel_for ran on one thread: is the build missing OpenMP?";
#else
  GTEST_SKIP() << "clang builds (sanitizers, fuzzing) are serial by choice (CMakeLists.txt)";
#endif
}

// block_runs (Adam-mini's pass over a thread's run of blocks: one prefetched way, block b + 1's sum of
// squares taken while block b is updated, the run's first block summed alone) against sum_squares (each
// block summed alone): every block of the run asked for once, with the same bits, and no other; every
// element of the run visited once, no other. Block sizes around the 8-lane, 16-step and 64-value chunks
// and around the 512-value prefetch distance and 1,024 (the two-way path's bound until the nineteenth
// session); runs of 1 to 7 blocks, so that a run's first and last block and runs of one block occur;
// both compiled variants, float and double. Oracle for sum_squares itself: the float64 sum, to the
// partial sums' rounding.
template <class T>
std::string block_runs_problems(LoopVariant variant) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  std::ostringstream problems;
  const int64_t nb = 9;
  for (const int64_t bs :
       {1, 7, 8, 9, 16, 17, 63, 64, 65, 100, 200, 511, 512, 513, 1000, 1023, 1024, 1025, 1040, 2049}) {
    std::vector<T> x(static_cast<size_t>(nb * bs));
    for (auto& e : x) e = T(normal(rng));
    for (const auto& [s, e] :
         std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {0, 2}, {0, 3}, {1, 5}, {0, 6}, {2, 9}}) {
      std::vector<int> asked(static_cast<size_t>(nb), 0), visits(x.size(), 0);
      std::vector<T> sums(static_cast<size_t>(nb), T(0));
      set_loop_variant(variant);
      block_runs(
          [&](int64_t b, T sum) {
            ++asked[static_cast<size_t>(b)];
            sums[static_cast<size_t>(b)] = sum;
            return [&visits, b, bs](int64_t k) { ++visits[static_cast<size_t>(b * bs + k)]; };
          },
          x.data(), std::array<const T*, 1>{x.data()}, bs, s, e);
      set_loop_variant(LoopVariant::widest);
      const std::string at =
          "bs = " + std::to_string(bs) + ", run [" + std::to_string(s) + ", " + std::to_string(e) + ")";
      for (int64_t b = 0; b < nb; ++b) {
        const bool in = b >= s && b < e;
        if (asked[static_cast<size_t>(b)] != (in ? 1 : 0))
          problems << at << ": block " << b << " asked " << asked[static_cast<size_t>(b)] << " times; ";
        for (int64_t k = 0; k < bs; ++k)
          if (visits[static_cast<size_t>(b * bs + k)] != (in ? 1 : 0))
            problems << at << ": block " << b << " element " << k << " visited "
                     << visits[static_cast<size_t>(b * bs + k)] << " times; ";
        if (!in) continue;
        const T alone = sum_squares(x.data() + b * bs, bs), got = sums[static_cast<size_t>(b)];
        if (std::memcmp(&got, &alone, sizeof(T)) != 0)
          problems << at << ": block " << b << " sum " << got << " vs alone " << alone << "; ";
        double exact = 0;
        for (int64_t k = 0; k < bs; ++k) exact += std::pow(static_cast<double>(x[static_cast<size_t>(b * bs + k)]), 2);
        if (!(std::abs(static_cast<double>(alone) - exact) <= 1e-5 * exact + 1e-30))
          problems << at << ": block " << b << " sum " << alone << " vs float64 " << exact << "; ";
      }
    }
  }
  return problems.str();
}

TEST(CpuLoop, BlockRunsSumEachBlockWithTheBitsOfTheSumAlone) {
  for (const LoopVariant v : {LoopVariant::widest, LoopVariant::baseline}) {
    const char* name = v == LoopVariant::widest ? "widest" : "baseline";
    EXPECT_EQ(block_runs_problems<float>(v), "") << "float, " << name << " loop";
    EXPECT_EQ(block_runs_problems<double>(v), "") << "double, " << name << " loop";
  }
}

// elements_two_way (SGD-SaI's and SGDClip's two halves stepped together): every index of [begin, end)
// visited once, none outside, at lengths around the 16-element step and with odd starts, in both
// compiled variants. Oracle: a counter per index.
TEST(CpuLoop, TwoWayElementsVisitEveryIndexOnce) {
  for (const LoopVariant v : {LoopVariant::widest, LoopVariant::baseline})
    for (const int64_t begin : {0, 3, 17})
      for (const int64_t len : {0, 1, 15, 16, 31, 32, 33, 47, 64, 100, 1000, 4099}) {
        std::vector<int> visits(static_cast<size_t>(begin + len + 5), 0);
        set_loop_variant(v);
        elements_two_way([&](int64_t k) { ++visits[static_cast<size_t>(k)]; }, begin, begin + len);
        set_loop_variant(LoopVariant::widest);
        for (int64_t k = 0; k < static_cast<int64_t>(visits.size()); ++k)
          EXPECT_EQ(visits[static_cast<size_t>(k)], k >= begin && k < begin + len ? 1 : 0)
              << "begin " << begin << ", length " << len << ", index " << k << ", "
              << (v == LoopVariant::widest ? "widest" : "baseline") << " loop";
      }
}

// two_streams (Adam-mini's Conv1D update, two rows stepped together): each functor visits every index
// of [0, n) once, none outside, at lengths around the 16-element step (the tail past the last whole
// step included), in both compiled variants. Oracle: a counter per index and functor.
TEST(CpuLoop, TwoStreamsVisitEveryIndexOnceEach) {
  for (const LoopVariant v : {LoopVariant::widest, LoopVariant::baseline})
    for (const int64_t n : {0, 1, 15, 16, 17, 31, 32, 33, 100, 288, 1000}) {
      std::vector<int> first(static_cast<size_t>(n + 5), 0), second(static_cast<size_t>(n + 5), 0);
      set_loop_variant(v);
      two_streams([&](int64_t k) { ++first[static_cast<size_t>(k)]; },
                  [&](int64_t k) { ++second[static_cast<size_t>(k)]; }, n);
      set_loop_variant(LoopVariant::widest);
      for (int64_t k = 0; k < n + 5; ++k) {
        const int want = k < n ? 1 : 0;
        EXPECT_EQ(first[static_cast<size_t>(k)], want) << "first stream, n " << n << ", index " << k;
        EXPECT_EQ(second[static_cast<size_t>(k)], want) << "second stream, n " << n << ", index " << k;
      }
    }
}

// run_jobs (a step's one parallel region over every tensor): every unit of every job is run exactly
// once and whole, by one call, at every thread count; each thread's share is its equal share of the
// elements to within one unit; job lists with empty jobs, units larger than a share, a single job and
// more threads than the grain allows. Oracle: counters per unit and per thread.
std::string run_jobs_problems(const std::vector<std::pair<int64_t, int64_t>>& shape, int threads) {
  std::vector<std::vector<std::atomic<int>>> seen;
  for (const auto& [units, numel] : shape) seen.emplace_back(static_cast<size_t>(units));
  std::vector<std::atomic<int64_t>> per_thread(16);
  std::vector<TensorJob> jobs;
  int64_t total = 0, largest_unit = 1;
  for (size_t j = 0; j < shape.size(); ++j) {
    const auto [units, numel] = shape[j];
    total += units * numel;
    largest_unit = std::max(largest_unit, numel);
    jobs.push_back({units, numel, [&, j, numel = numel](int64_t begin, int64_t end) {
                      for (int64_t u = begin; u < end; ++u) ++seen[j][u];
                      per_thread[at::get_thread_num()] += (end - begin) * numel;
                    }});
  }
  const int previous = at::get_num_threads();
  at::set_num_threads(threads);
  run_jobs(jobs);
  at::set_num_threads(previous);
  std::ostringstream out;
  for (size_t j = 0; j < shape.size(); ++j)
    for (int64_t u = 0; u < shape[j].first; ++u)
      if (seen[j][u] != 1) out << "job " << j << " unit " << u << " ran " << seen[j][u] << " times; ";
  const int64_t used = std::max<int64_t>(1, std::min<int64_t>(threads, total / kGrain));
  int64_t sum = 0;
  for (int t = 0; t < 16; ++t) {
    sum += per_thread[t];
#if defined(__GNUC__) && !defined(__clang__)  // parallel only with OpenMP (ParallelForRunsOnTheThreads)
    if (t < used && std::abs(per_thread[t] - total / used) > largest_unit + 1)
      out << "thread " << t << " ran " << per_thread[t] << " of " << total << " elements over " << used << "; ";
#endif
  }
  if (sum != total) out << "ran " << sum << " of " << total << " elements; ";
  return out.str();
}

TEST(CpuLoop, RunJobsRunsEveryUnitOnceInEqualShares) {
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> shapes = {
      {},
      {{0, 1}},
      {{5, 1}},
      {{3 * kGrain + 7, 1}},
      {{1000, 256}, {0, 1}, {512, 1}, {7, 96}, {1, 70000}, {100000, 1}, {0, 3}, {333, 333}},
      {{1, 5 * kGrain}},  // one unit larger than any share
      {{2, 3 * kGrain}, {1, 1}, {kGrain, 2}},
      {{4 * kGrain, 1}, {4 * kGrain, 1}, {4 * kGrain, 1}},
  };
  for (int threads = 1; threads <= 4; ++threads)
    for (size_t c = 0; c < shapes.size(); ++c)
      EXPECT_EQ(run_jobs_problems(shapes[c], threads), "") << "case " << c << " at " << threads << " threads";
}

}  // namespace
}  // namespace bs
