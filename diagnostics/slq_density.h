// Spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019, PyHessian's `density`):
// per run, m Lanczos steps from a normalised Rademacher start, nodes = eig(T), weights = (first
// eigenvector component)^2; the density is the run-average of Gaussians at the nodes.
#pragma once
#include "hvp_operator.h"

namespace bs {

struct SlqRun {
  std::vector<double> nodes, weights;  // weights sum to 1
};

struct Density {
  std::vector<double> grid, values;  // values integrate to 1 over grid
  std::vector<SlqRun> runs;
  double sigma = 0;
  int64_t n_products = 0;
};

// One quadrature from `start`. With full reorthogonalisation and steps >= n it is exact:
// sum_i w_i nodes_i^p = z^T A^p z / z^T z for p < 2*steps.
SlqRun slq_run(const LinearOp& op, const torch::Tensor& start, int64_t steps, bool reorth);

// Gaussian smoothing: sigma = 2 (max-min) / (steps-1) / sqrt(8 ln 3) (curvlinops' kappa=3 rule, in
// the spectrum's own units), grid of `points` over [min - 5%, max + 5%] of the range.
Density slq_density(const LinearOp& op, int64_t n, int64_t runs, int64_t steps, bool reorth, uint64_t seed,
                    torch::Dtype dtype, int64_t points = 1000);

}  // namespace bs
