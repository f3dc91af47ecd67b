// Hutchinson and Hutch++ traces. Oracles: exact traces of the dense autograd Hessian's diagonal blocks;
// every block estimate must lie within 4 standard errors; the analytic diagonal quadratic's trace.
#include <gtest/gtest.h>

#include <functional>

#include "dense_hessian.h"
#include "errors.h"
#include "hutchinson.h"

using namespace bs;
using namespace bs::testing_support;

// Every block's estimate and the total within 4 standard errors of the dense Hessian's (tiny
// attention model), for each estimator at its number of products; the slacks absorb rounding where a
// standard error is zero.
struct EstimatorCase {
  std::string name;
  std::function<TraceResult(const LinearOp&, const ParamTable&, int64_t, uint64_t, torch::Dtype)> estimate;
  int64_t products;
  double block_slack, total_slack;
};

class TraceEstimators : public ::testing::TestWithParam<EstimatorCase> {};

TEST_P(TraceEstimators, EveryBlockTraceWithinFourStandardErrors) {
  const auto& c = GetParam();
  TinyHessian t("attention");
  const TraceResult r = c.estimate(t.op.as_op(), t.op.table(), c.products, 7, torch::kFloat64);
  EXPECT_EQ(r.n_products, c.products);
  const auto exact = block_traces(t.H, t.op.table());
  for (size_t i = 0; i < exact.size(); ++i)
    EXPECT_LE(std::abs(r.block_trace[i] - exact[i]), 4 * r.block_stderr[i] + c.block_slack) << t.op.table().at(i).name;
  EXPECT_LE(std::abs(r.trace - t.H.diagonal().sum().item<double>()), 4 * r.std_error + c.total_slack);
}

INSTANTIATE_TEST_SUITE_P(Dense, TraceEstimators,
                         ::testing::Values(EstimatorCase{"hutchinson", hutchinson, 400, 1e-12, 0.0},
                                           EstimatorCase{"hutch_plus_plus", hutch_plus_plus, 300, 1e-10, 1e-10}),
                         [](const auto& info) { return info.param.name; });

TEST(Hutchinson, DiagonalOperatorIsExact) {
  // For a diagonal matrix z^T D z = tr(D) for every Rademacher z: zero variance.
  auto d = torch::linspace(1.0, 2.0, 30, torch::kFloat64);
  ParamTable t({{"a", torch::zeros({10})}, {"b", torch::zeros({20})}});
  auto r = hutchinson([&](const torch::Tensor& v) { return d * v; }, t, 5, 1, torch::kFloat64);
  EXPECT_NEAR(r.trace, d.sum().item<double>(), 1e-12);
  EXPECT_NEAR(r.block_trace[0], d.narrow(0, 0, 10).sum().item<double>(), 1e-12);
  EXPECT_NEAR(r.std_error, 0.0, 1e-12);
}

// Hutch++. Oracles: a matrix of rank at most k is captured whole by the sketch, so the estimate is
// its exact trace with zero residual (its blocks against the dense Hessian: TraceEstimators above);
// on a spectrum with a few dominant eigenvalues (random eigenvectors) its error is below Hutchinson's
// for the same number of products, over 20 seeds.
TEST(HutchPlusPlus, LowRankMatrixIsExact) {
  torch::manual_seed(3);
  const auto U = torch::randn({40, 4}, torch::kFloat64);
  const auto A = torch::mm(U, U.t()) - 2.0 * torch::mm(U.narrow(1, 0, 1), U.narrow(1, 0, 1).t());  // indefinite
  ParamTable t({{"a", torch::zeros({15})}, {"b", torch::zeros({25})}});
  auto r = hutch_plus_plus([&](const torch::Tensor& v) { return torch::mv(A, v); }, t, 18, 1, torch::kFloat64);
  EXPECT_EQ(r.n_products, 18);
  const auto diag = A.diagonal();
  EXPECT_NEAR(r.trace, diag.sum().item<double>(), 1e-10);
  EXPECT_NEAR(r.block_trace[0], diag.narrow(0, 0, 15).sum().item<double>(), 1e-10);
  EXPECT_NEAR(r.block_trace[1], diag.narrow(0, 15, 25).sum().item<double>(), 1e-10);
  EXPECT_NEAR(r.std_error, 0.0, 1e-10);
}

TEST(HutchPlusPlus, BeatsHutchinsonWhenAFewEigenvaluesDominate) {
  torch::manual_seed(5);
  const int64_t n = 200;
  const auto Qr = std::get<0>(torch::linalg_qr(torch::randn({n, n}, torch::kFloat64)));
  auto lambda = torch::full({n}, 0.01, torch::kFloat64);
  lambda.narrow(0, 0, 5).copy_(torch::tensor({50.0, 40.0, -30.0, 20.0, 10.0}, torch::kFloat64));
  const auto A = torch::mm(Qr * lambda, Qr.t());
  auto op = [&](const torch::Tensor& v) { return torch::mv(A, v); };
  ParamTable t({{"all", torch::zeros({n})}});
  const double exact = lambda.sum().item<double>();
  double err_pp = 0, err_h = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    err_pp += std::pow(hutch_plus_plus(op, t, 30, seed, torch::kFloat64).trace - exact, 2);
    err_h += std::pow(hutchinson(op, t, 30, seed, torch::kFloat64).trace - exact, 2);
  }
  EXPECT_LT(err_pp, 0.01 * err_h);
}

TEST(HutchPlusPlus, ProductsMustBeAMultipleOfThree) {
  ParamTable t({{"a", torch::zeros({4})}});
  auto id = [](const torch::Tensor& v) { return v; };
  EXPECT_THROW(hutch_plus_plus(id, t, 10, 0, torch::kFloat64), UserError);
  EXPECT_THROW(hutch_plus_plus(id, t, 3, 0, torch::kFloat64), UserError);
}
