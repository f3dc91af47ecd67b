// Eigensolvers. Oracles: an analytic diagonal quadratic with known spectrum, and the dense symmetric
// eigendecomposition (Eigen) of the dense autograd Hessian of tiny float64 models.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include "dense_hessian.h"
#include "errors.h"
#include "spectral.h"

using namespace bs;
using namespace bs::testing_support;

namespace {

// A = diag(d): eigenvalues known exactly.
LinearOp diagonal_op(const torch::Tensor& d) {
  return [d](const torch::Tensor& v) { return d * v; };
}

std::vector<double> dense_top(const torch::Tensor& H, int k) {
  auto Hc = H.contiguous();
  Eigen::Map<Eigen::MatrixXd> M(Hc.data_ptr<double>(), H.size(0), H.size(1));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(M);
  std::vector<double> out;
  for (int i = 0; i < k; ++i) out.push_back(es.eigenvalues()[H.size(0) - 1 - i]);
  return out;
}

}  // namespace

TEST(Lanczos, AnalyticQuadratic) {
  auto d = torch::linspace(-3.0, 10.0, 200, torch::kFloat64);
  EigOptions o;
  o.k = 3;
  auto r = lanczos_eigs(diagonal_op(d), 200, o);
  ASSERT_EQ(r.values.size(), 3u);
  EXPECT_NEAR(r.values[0], 10.0, 1e-10);
  EXPECT_NEAR(r.values[1], d[198].item<double>(), 1e-10);
  for (double res : r.residuals) EXPECT_LT(res, 1e-8);
  o.which = EigWhich::SA;
  auto s = lanczos_eigs(diagonal_op(d), 200, o);
  EXPECT_NEAR(s.values[0], -3.0, 1e-10);
  o.which = EigWhich::LM;
  o.k = 1;
  auto m = lanczos_eigs(diagonal_op(-d), 200, o);
  EXPECT_NEAR(m.values[0], -10.0, 1e-10);
}

TEST(Lanczos, WarmStartAtAnEigenvectorNeedsFewProducts) {
  auto d = torch::linspace(0.0, 1.0, 300, torch::kFloat64);
  EigOptions cold;
  cold.k = 1;
  auto a = lanczos_eigs(diagonal_op(d), 300, cold);
  EigOptions warm = cold;
  warm.start = a.vectors[0];
  auto b = lanczos_eigs(diagonal_op(d), 300, warm);
  EXPECT_NEAR(b.values[0], 1.0, 1e-10);
  EXPECT_LT(b.n_products, a.n_products);
}

TEST(Lanczos, TopFiveOfTinyModelsMatchDenseEigendecomposition) {
  for (const char* which : {"mlp", "attention", "gpt2"}) {
    Session s = tiny_session(which);
    Batch b = tiny_batch(s, 0);
    auto H = dense_hessian(*s.net, b, s.loss);
    auto expected = dense_top(H, 5);
    HvpOperator op(*s.net, {b}, s.loss, "test");
    EigOptions o;  // defaults of `blocksharp profile`
    auto r = lanczos_eigs(op.as_op(), op.size(), o);
    ASSERT_EQ(r.values.size(), 5u) << which;
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(r.values[i], expected[i], 1e-8 * std::abs(expected[0])) << which << " " << i;
    EXPECT_EQ(r.status, EigStatus::Converged);
  }
}

TEST(PowerIteration, FindsTopPairsWithinItsTolerance) {
  auto d = torch::cat({torch::tensor({5.0, 3.0}, torch::kFloat64), torch::linspace(0.0, 1.0, 100, torch::kFloat64)});
  EigOptions o;
  o.k = 2;
  o.tol = 1e-6;
  auto r = power_eigs(diagonal_op(d), d.numel(), o);
  EXPECT_NEAR(r.values[0], 5.0, 1e-4);
  EXPECT_NEAR(r.values[1], 3.0, 1e-4);
}

TEST(DenseEigs, BlockLambdaMaxIsExact) {
  Session s = tiny_session("attention");
  Batch b = tiny_batch(s, 0);
  auto H = dense_hessian(*s.net, b, s.loss);
  HvpOperator op(*s.net, {b}, s.loss, "test");
  const size_t q = op.table().index_of("layers.0.self_attn.q_proj.weight");
  const auto& e = op.table().at(q);
  auto idx = torch::arange(e.offset, e.offset + e.numel);
  auto expected = dense_top(H.index_select(0, idx).index_select(1, idx), 1)[0];
  EXPECT_NEAR(dense_eigs(op.block_op({q}), e.numel).values[0], expected, 1e-10 * std::abs(expected));
  EigOptions o;
  o.k = 1;
  EXPECT_NEAR(lanczos_eigs(op.block_op({q}), e.numel, o).values[0], expected, 1e-8 * std::abs(expected));
}

TEST(Lanczos, TopkNotBelowParameterCountIsAUserError) {
  auto d = torch::ones({4}, torch::kFloat64);
  EigOptions o;
  o.k = 4;
  EXPECT_THROW(lanczos_eigs(diagonal_op(d), 4, o), UserError);
  EXPECT_THROW(power_eigs(diagonal_op(d), 4, o), UserError);
}

// A loss that does not depend on the parameters has the zero Hessian: eigenvalues 0 (a result), with
// residual 0, from either solver, and no breakdown or non-finite product.
TEST(ZeroOperator, EigenvaluesAreZeroNotAnError) {
  LinearOp zero = [](const torch::Tensor& v) { return torch::zeros_like(v); };
  EigOptions o;
  o.k = 3;
  for (const auto& r : {lanczos_eigs(zero, 50, o), power_eigs(zero, 50, o)}) {
    ASSERT_EQ(r.values.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(r.values[i], 0.0);
      EXPECT_EQ(r.residuals[i], 0.0);
      EXPECT_TRUE(r.converged[i]);
      EXPECT_NEAR(r.vectors[i].norm().item<double>(), 1.0, 1e-12);
    }
    EXPECT_EQ(r.status, EigStatus::Converged);
  }
}

// PyHessian's stopping test alone calls a stalled Rayleigh quotient converged: with eigenvalues +5 and
// -5 the iterate flips between them and the quotient does not move, yet the residual is large. The
// residual test reports it as not converged.
TEST(PowerIteration, StalledQuotientWithLargeResidualIsNotConverged) {
  auto d = torch::cat({torch::tensor({5.0, -5.0}, torch::kFloat64), torch::linspace(0.0, 1.0, 50, torch::kFloat64)});
  EigOptions o;
  o.k = 1;
  o.tol = 1e-3;
  auto r = power_eigs(diagonal_op(d), d.numel(), o);
  EXPECT_GT(r.residuals[0], 0.5);
  EXPECT_FALSE(r.converged[0]);
  EXPECT_EQ(r.status, EigStatus::NotConverged);
}
