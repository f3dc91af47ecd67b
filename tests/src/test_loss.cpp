// Losses. Oracle: scalar loops of the textbook definitions (-log softmax at the target, mean over all
// tokens; mean of squared differences).
#include <gtest/gtest.h>

#include <cmath>

#include "errors.h"
#include "loss.h"

using namespace bs;

TEST(Loss, CrossEntropyOverTokensEqualsScalarReference) {
  auto logits = torch::randn({2, 3, 5}, torch::kFloat64);
  auto targets = torch::randint(0, 5, {2, 3}, torch::kLong);
  double ref = 0;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 3; ++t) {
      double z = 0;
      for (int c = 0; c < 5; ++c) z += std::exp(logits[b][t][c].item<double>());
      ref += -(logits[b][t][targets[b][t].item<int64_t>()].item<double>() - std::log(z));
    }
  ref /= 6;
  EXPECT_NEAR(compute_loss(logits, targets, LossKind::CrossEntropy).item<double>(), ref, 1e-14);
}

TEST(Loss, MseEqualsScalarReference) {
  auto out = torch::randn({4, 2}, torch::kFloat64), y = torch::randn({4, 2}, torch::kFloat64);
  double ref = 0;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) ref += std::pow(out[i][j].item<double>() - y[i][j].item<double>(), 2);
  EXPECT_NEAR(compute_loss(out, y, LossKind::Mse).item<double>(), ref / 8, 1e-14);
}

TEST(Loss, MismatchedShapesAreUserErrors) {
  EXPECT_THROW(compute_loss(torch::randn({4, 3}), torch::zeros({5}, torch::kLong), LossKind::CrossEntropy), UserError);
  EXPECT_THROW(compute_loss(torch::randn({4, 3}), torch::full({4}, 7, torch::kLong), LossKind::CrossEntropy),
               UserError);
  EXPECT_THROW(compute_loss(torch::randn({4, 3}), torch::randn({4, 2}), LossKind::Mse), UserError);
  EXPECT_THROW(loss_kind_from_string("hinge"), UserError);
}
