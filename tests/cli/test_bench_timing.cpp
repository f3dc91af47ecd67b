// The benchmarks' medians (tools/bench_timing.h). Oracle: Python's statistics.median, which the
// PyTorch side of bench train uses: the middle value, or the mean of the middle two.
#include <gtest/gtest.h>

#include "bench_timing.h"

using namespace bs;

TEST(BenchTiming, MedianIsPythonsStatisticsMedian) {
  EXPECT_EQ(median({3.0}), 3.0);
  EXPECT_EQ(median({3.0, 1.0, 2.0}), 2.0);       // statistics.median([3, 1, 2]) == 2
  EXPECT_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);  // statistics.median([4, 1, 3, 2]) == 2.5
  EXPECT_EQ(median({5.0, 5.0, 1.0, 9.0}), 5.0);
}

TEST(BenchTiming, MedianOfRatiosPairsTheTimesByIndex) {
  // ratios 2, 3, 4, 1: statistics.median == 2.5; the ratio of the medians would be 3 / 1 = 3.
  EXPECT_EQ(median_of_ratios({2.0, 9.0, 4.0, 1.0}, {1.0, 3.0, 1.0, 1.0}), 2.5);
  EXPECT_EQ(median_of_ratios({2.0, 9.0, 4.0}, {1.0, 3.0, 1.0}), 3.0);
}
