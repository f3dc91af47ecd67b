// Hutchinson traces. Oracles: exact traces of the dense autograd Hessian's diagonal blocks; every
// block estimate must lie within 4 standard errors; the analytic diagonal quadratic's trace.
#include <gtest/gtest.h>

#include "dense_hessian.h"
#include "hutchinson.h"

using namespace bs;
using namespace bs::testing_support;

TEST(Hutchinson, EveryBlockTraceWithinFourStandardErrors) {
  Session s = tiny_session("attention");
  Batch b = tiny_batch(s, 0);
  auto H = dense_hessian(*s.net, b, s.loss);
  HvpOperator op(*s.net, {b}, s.loss, "test");
  auto r = hutchinson(op.as_op(), op.table(), 400, 7, torch::kFloat64);
  EXPECT_EQ(r.n_products, 400);
  const auto diag = H.diagonal();
  for (size_t i = 0; i < op.table().size(); ++i) {
    const auto& e = op.table().at(i);
    const double exact = diag.narrow(0, e.offset, e.numel).sum().item<double>();
    EXPECT_LE(std::abs(r.block_trace[i] - exact), 4 * r.block_stderr[i] + 1e-12) << e.name;
  }
  const double exact_total = diag.sum().item<double>();
  EXPECT_LE(std::abs(r.trace - exact_total), 4 * r.stderr_);
}

TEST(Hutchinson, DiagonalOperatorIsExact) {
  // For a diagonal matrix z^T D z = tr(D) for every Rademacher z: zero variance.
  auto d = torch::linspace(1.0, 2.0, 30, torch::kFloat64);
  ParamTable t({{"a", torch::zeros({10})}, {"b", torch::zeros({20})}});
  auto r = hutchinson([&](const torch::Tensor& v) { return d * v; }, t, 5, 1, torch::kFloat64);
  EXPECT_NEAR(r.trace, d.sum().item<double>(), 1e-12);
  EXPECT_NEAR(r.block_trace[0], d.narrow(0, 0, 10).sum().item<double>(), 1e-12);
  EXPECT_NEAR(r.stderr_, 0.0, 1e-12);
}
