// Partition scoring. Oracles: a constructed matrix with known block masses (exact fractions), and
// the dense answer for the randomized estimate on a tiny model's q_proj (within 4 standard errors).
#include <gtest/gtest.h>

#include "dense_hessian.h"
#include "spectral.h"
#include "structure.h"

using namespace bs;
using namespace bs::testing_support;

TEST(Structure, CandidatesOfAMatrix) {
  auto c = candidate_partitions({4, 3}, 2);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[0].name, "whole");
  EXPECT_EQ(c[1].name, "per-head");
  EXPECT_EQ(c[1].n_blocks, 2);
  EXPECT_EQ(c[2].n_blocks, 4);     // rows
  EXPECT_EQ(c[3].n_blocks, 3);     // columns
  EXPECT_EQ(c[4].n_blocks, 12);    // elements
  EXPECT_EQ(c[2].block_of[5], 1);  // flat 5 = row 1, column 2
  EXPECT_EQ(c[3].block_of[5], 2);
}

TEST(Structure, DenseFractionsOfKnownMatrix) {
  // 2x2 tensor (4 entries), per-row blocks {0,1},{2,3}. Inside-row entries 1, cross-row entries 0.5.
  auto H = torch::full({4, 4}, 0.5, torch::kFloat64);
  H.narrow(0, 0, 2).narrow(1, 0, 2).fill_(1.0);
  H.narrow(0, 2, 2).narrow(1, 2, 2).fill_(1.0);
  auto c = candidate_partitions({2, 2}, 0);
  score_dense(H, c);
  const double total = 8 * 1.0 + 8 * 0.25;
  EXPECT_NEAR(c[0].fraction, 1.0, 1e-15);
  EXPECT_NEAR(c[1].fraction, 8.0 / total, 1e-15);                   // per-row
  EXPECT_NEAR(c[2].fraction, (4 * 1.0 + 4 * 0.25) / total, 1e-15);  // per-column: (0,2),(1,3) blocks
  EXPECT_NEAR(c[3].fraction, 4.0 / total, 1e-15);                   // diagonal only
  EXPECT_EQ(recommend(c, 0.75).name, "per-row");
  EXPECT_EQ(recommend(c, 0.99).name, "whole");
}

TEST(Structure, RandomizedEstimateMatchesDenseOnTinyModel) {
  Session s = tiny_session("attention");
  HvpOperator H(*s.net, {s.train_batch(0)}, s.loss, "test");
  const size_t q = H.table().index_of("layers.0.self_attn.q_proj.weight");
  const auto& e = H.table().at(q);
  auto dense = candidate_partitions(e.shape, 4);
  score_dense(dense_matrix(H.block_op({q}), e.numel), dense);
  auto randomized = candidate_partitions(e.shape, 4);
  score_randomized(H.block_op({q}), e.numel, 200, 3, randomized);
  for (size_t c = 0; c < dense.size(); ++c) {
    // The ratio estimator adds a small bias from the estimated denominator; 4 standard errors + 2%.
    EXPECT_NEAR(randomized[c].fraction, dense[c].fraction, 4 * randomized[c].fraction_stderr + 0.02) << dense[c].name;
  }
}
