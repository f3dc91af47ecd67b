// Lanczos tridiagonalisation (optionally with full reorthogonalisation, as PyHessian) and smoothing.
#include "slq_density.h"

#include <Eigen/Dense>

#include <cmath>

#include "errors.h"
#include "progress.h"

namespace bs {

SlqRun slq_run(const LinearOp& op, const torch::Tensor& start, int64_t steps, bool reorth) {
  std::vector<double> alpha, beta;
  std::vector<torch::Tensor> basis;
  auto v = start.to(torch::kFloat64);
  v = v / v.norm();
  torch::Tensor v_prev;
  double b_prev = 0;
  for (int64_t j = 0; j < steps; ++j) {
    if (reorth) basis.push_back(v);
    auto w = op(v).to(torch::kFloat64);
    const double a = w.dot(v).item<double>();
    w -= a * v;
    if (v_prev.defined()) w -= b_prev * v_prev;
    if (reorth)
      for (int pass = 0; pass < 2; ++pass)
        for (const auto& u : basis) w -= u.dot(w) * u;
    alpha.push_back(a);
    const double b = w.norm().item<double>();
    if (j + 1 == steps || b < 1e-10 * std::max(1.0, std::abs(a))) break;  // invariant subspace found
    beta.push_back(b);
    v_prev = v;
    v = w / b;
    b_prev = b;
  }
  const int64_t m = static_cast<int64_t>(alpha.size());
  Eigen::VectorXd d = Eigen::Map<Eigen::VectorXd>(alpha.data(), m);
  Eigen::VectorXd e = Eigen::Map<Eigen::VectorXd>(beta.data(), m - 1);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es;
  es.computeFromTridiagonal(d, e, Eigen::ComputeEigenvectors);
  SlqRun r;
  for (int64_t i = 0; i < m; ++i) {
    r.nodes.push_back(es.eigenvalues()[i]);
    r.weights.push_back(es.eigenvectors()(0, i) * es.eigenvectors()(0, i));
  }
  return r;
}

Density slq_density(const LinearOp& op, int64_t n, int64_t runs, int64_t steps, bool reorth, uint64_t seed,
                    torch::Dtype dtype, int64_t points) {
  if (runs < 1 || steps < 2)
    throw UserError(param("density_runs") + " must be >= 1 and " + param("density_steps") + " >= 2");
  Density d;
  std::mt19937_64 rng(seed);
  int64_t calls = 0;
  LinearOp counted = [&](const torch::Tensor& v) {
    ++calls;
    return op(v);
  };
  Progress bar("density", runs);
  for (int64_t r = 0; r < runs; ++r) {
    d.runs.push_back(slq_run(counted, rademacher(n, rng, dtype), std::min(steps, n), reorth));
    bar.update(r + 1);
  }
  d.n_products = calls;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& run : d.runs)
    for (double x : run.nodes) lo = std::min(lo, x), hi = std::max(hi, x);
  const double range = std::max(hi - lo, 1e-12 * std::max(1.0, std::abs(hi)));
  d.sigma = 2.0 * range / std::max<int64_t>(steps - 1, 1) / std::sqrt(8.0 * std::log(3.0));
  const double a = lo - 0.05 * range - 3 * d.sigma, b = hi + 0.05 * range + 3 * d.sigma;
  const double dx = (b - a) / (points - 1);
  d.grid.resize(points);
  d.values.assign(points, 0.0);
  for (int64_t i = 0; i < points; ++i) d.grid[i] = a + i * dx;
  const double norm = 1.0 / (std::sqrt(2 * M_PI) * d.sigma * runs);
  for (const auto& run : d.runs)
    for (size_t k = 0; k < run.nodes.size(); ++k)
      for (int64_t i = 0; i < points; ++i) {
        const double z = (d.grid[i] - run.nodes[k]) / d.sigma;
        d.values[i] += run.weights[k] * norm * std::exp(-0.5 * z * z);
      }
  return d;
}

}  // namespace bs
