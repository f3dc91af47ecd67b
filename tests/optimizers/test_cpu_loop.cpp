// The CPU loop itself (cpu_loop.h): its parallel chunks really run on LibTorch's threads, and the
// one-pass block sum Adam-mini takes while updating gives sum_squares' bits. Compiled like the
// optimizers (-ffp-contract=off, tests/CMakeLists.txt), so the wide variant here rounds as theirs does.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
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

// elements_and_sum_squares (Adam-mini's pass: block b + 1's sum of squares while block b is
// updated) against sum_squares (the block summed alone, as a thread's first block is): the same bits
// at lengths around the 8-lane and 64-value chunks, in both compiled variants, float and double; f
// visits every index once. Oracle for both sums: the float64 sum, to the partial sums' rounding.
template <class T>
void check_one_pass_sum(LoopVariant variant) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  for (const int64_t n : {0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 200, 1000, 4099}) {
    std::vector<T> x(static_cast<size_t>(n));
    for (auto& e : x) e = T(normal(rng));
    std::vector<int> visits(static_cast<size_t>(n), 0);
    set_loop_variant(variant);
    const T one_pass = elements_and_sum_squares([&](int64_t k) { ++visits[static_cast<size_t>(k)]; }, n, x.data());
    set_loop_variant(LoopVariant::widest);
    const T alone = sum_squares(x.data(), n);
    EXPECT_EQ(std::memcmp(&one_pass, &alone, sizeof(T)), 0) << "n = " << n << ": " << one_pass << " vs " << alone;
    double exact = 0;
    for (const T e : x) exact += static_cast<double>(e) * static_cast<double>(e);
    EXPECT_NEAR(static_cast<double>(alone), exact, 1e-5 * exact + 1e-30) << n;
    for (int64_t k = 0; k < n; ++k) EXPECT_EQ(visits[static_cast<size_t>(k)], 1) << "n = " << n << ", k = " << k;
  }
}

TEST(CpuLoop, OnePassBlockSumHasTheBitsOfTheSumAlone) {
  for (const LoopVariant v : {LoopVariant::widest, LoopVariant::baseline}) {
    check_one_pass_sum<float>(v);
    check_one_pass_sum<double>(v);
  }
}

}  // namespace
}  // namespace bs
