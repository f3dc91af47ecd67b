// ZeRO-1 tensor ownership. Oracle: the optimal two-way split by exhaustive search; greedy largest-first
// (LPT) must stay within Graham's bound 4/3 - 1/(3m) of it. Equality of sharded and unsharded training
// runs is checked with real ranks in tests/cli/test_distributed.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "errors.h"
#include "zero_optimizer.h"

using namespace bs;

TEST(Zero1Owners, WithinGrahamBoundOfTheOptimalSplit) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<int64_t> numel(11);
    for (auto& n : numel) n = 1 + static_cast<int64_t>(rng() % 1000);
    const auto owner = zero1_owners(numel, 2);
    int64_t load[2] = {0, 0};
    for (size_t i = 0; i < numel.size(); ++i) {
      ASSERT_TRUE(owner[i] == 0 || owner[i] == 1);
      load[owner[i]] += numel[i];
    }
    const int64_t total = std::accumulate(numel.begin(), numel.end(), int64_t{0});
    int64_t best = total;
    for (uint32_t mask = 0; mask < (1u << numel.size()); ++mask) {
      int64_t a = 0;
      for (size_t i = 0; i < numel.size(); ++i)
        if (mask >> i & 1) a += numel[i];
      best = std::min(best, std::max(a, total - a));
    }
    EXPECT_LE(static_cast<double>(std::max(load[0], load[1])),
              (4.0 / 3.0 - 1.0 / 6.0) * static_cast<double>(best) + 1e-9);
  }
}

TEST(Zero1Owners, OneRankOwnsEverything) {
  const auto owner = zero1_owners({5, 3, 8}, 1);
  EXPECT_EQ(owner, (std::vector<int>{0, 0, 0}));
}

TEST(Zero1, RefusesOptimizersThatCoupleTensors) {
  OptimizerInputs in({"w"}, {torch::zeros({4})});
  for (const char* name : {"sgd-clip", "adam-clip", "frugal"})
    EXPECT_THROW(make_zero1(name, in, OptimizerOptions{}), UserError);
  EXPECT_THROW(make_zero1("no-such-optimizer", in, OptimizerOptions{}), UserError);
}
