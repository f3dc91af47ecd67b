// Stochastic Lanczos quadrature. Oracle: with full reorthogonalisation and as many steps as the
// dimension, Gauss quadrature is exact: sum_i w_i x_i^p = z^T H^p z / z^T z, with H the dense
// autograd Hessian. The smoothed density integrates to one.
#include <gtest/gtest.h>

#include "dense_hessian.h"
#include "slq_density.h"

using namespace bs;
using namespace bs::testing_support;

TEST(Slq, MomentsMatchExactSpectrumOfTinyModel) {
  Session s = tiny_session("gpt2");
  Batch b = tiny_batch(s, 0);
  auto H = dense_hessian(*s.net, b, s.loss);
  HvpOperator op(*s.net, {b}, s.loss, "test");
  const int64_t n = op.size();
  std::mt19937_64 rng(9);
  auto z = rademacher(n, rng, torch::kFloat64);
  auto run = slq_run(op.as_op(), z, n, true);
  auto zn = z / z.norm();
  auto Hz = zn;
  for (int p = 1; p <= 3; ++p) {
    Hz = torch::mv(H, Hz);
    const double exact = zn.dot(Hz).item<double>();
    double quad = 0;
    for (size_t i = 0; i < run.nodes.size(); ++i) quad += run.weights[i] * std::pow(run.nodes[i], p);
    EXPECT_NEAR(quad, exact, 1e-8 * std::max(1.0, std::abs(exact))) << "moment " << p;
  }
  double wsum = 0;
  for (double w : run.weights) wsum += w;
  EXPECT_NEAR(wsum, 1.0, 1e-12);
}

TEST(Slq, DensityIntegratesToOneAndCoversSpectrum) {
  auto d = torch::linspace(-1.0, 4.0, 120, torch::kFloat64);
  auto dens = slq_density([&](const torch::Tensor& v) { return d * v; }, 120, 3, 40, true, 1, torch::kFloat64, 500);
  double integral = 0;
  for (size_t i = 1; i < dens.grid.size(); ++i) integral += dens.values[i] * (dens.grid[i] - dens.grid[i - 1]);
  EXPECT_NEAR(integral, 1.0, 1e-3);
  EXPECT_LT(dens.grid.front(), -1.0);
  EXPECT_GT(dens.grid.back(), 4.0);
  EXPECT_EQ(dens.n_products, 3 * 40);
}
