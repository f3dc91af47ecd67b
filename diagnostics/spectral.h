// Extreme eigenpairs of a symmetric operator: Spectra's implicitly restarted Lanczos (the default),
// PyHessian's deflated power iteration (the baseline it is compared against), and a dense
// eigendecomposition for operators small enough to form column by column.
#pragma once
#include <random>
#include <string>
#include <vector>

#include "hvp_operator.h"
#include "words.h"

namespace bs {

// Which end of the spectrum: largest algebraic, smallest algebraic, largest magnitude (Spectra's rules).
enum class EigWhich { LA, SA, LM };
const char* to_string(EigWhich w);  // "LA", "SA", "LM"
inline const Words<EigWhich>& eig_which_words() {
  static const Words<EigWhich> w{{"LA", EigWhich::LA}, {"SA", EigWhich::SA}, {"LM", EigWhich::LM}};
  return w;
}

// Spectra's CompInfo for our solvers: all k pairs converged, some of them, or none.
enum class EigStatus { Converged, PartiallyConverged, NotConverged };

struct EigOptions {
  int64_t k = 5;
  EigWhich which = EigWhich::LA;
  int64_t ncv = 0;  // Lanczos basis size; 0: min(n, max(2k+1, 20))
  int64_t maxit = 1000;
  double tol = 1e-10;  // Spectra's relative Ritz tolerance; power iteration: PyHessian's 1e-3
  // > 0 (Lanczos): the wanted relative accuracy of the eigenvalues instead of a residual tolerance. A
  // Ritz value's error is at most ||r||^2 / gap (the gap to the rest of the spectrum; Parlett, "The
  // Symmetric Eigenvalue Problem", 11.7), so residuals ~ sqrt(accuracy) |lambda| suffice where a tolerance
  // of `accuracy` would overshoot to ~accuracy^2. k+1 pairs are computed so the k-th has a gap too; the
  // tolerance starts at sqrt(accuracy) and is tightened (and Lanczos restarted from the pairs found)
  // until every bound holds, at most 4 rounds.
  double accuracy = 0;
  torch::Tensor start;  // warm start (flat); random when undefined
  uint64_t seed = 0;
};

struct EigResult {
  std::vector<double> values;          // sorted by `which`: descending (LA), ascending (SA), by magnitude (LM)
  std::vector<torch::Tensor> vectors;  // flat float64, unit norm
  std::vector<double> residuals;       // ||A v - lambda v|| (measured with one extra product each)
  std::vector<bool> converged;
  std::vector<double> error_bounds;  // accuracy mode: residual^2 / gap per value (an upper bound on its error)
  int64_t n_products = 0;            // products used by the solver (residual checks excluded)
  EigStatus status = EigStatus::NotConverged;
  int64_t requested = 0;  // the pairs asked for
};
// "converged", "partially converged (2 of 5)" or "not converged".
std::string describe_status(const EigResult& r);

// lambda_max of H's diagonal block over ParamTable blocks (HvpOperator::table_block_op): dense when
// the block has at most 64 coordinates, else Lanczos (k = 1) at `tol`. The one rule profile and the
// tracer share.
double block_lambda_max(HvpOperator& H, const std::vector<size_t>& blocks, double tol, uint64_t seed);

// Lanczos basis size when EigOptions::ncv is 0: min(n, max(2k+1, 20)).
int64_t default_ncv(int64_t n, int64_t k);

EigResult lanczos_eigs(const LinearOp& op, int64_t n, const EigOptions& opt);
EigResult power_eigs(const LinearOp& op, int64_t n, const EigOptions& opt);
// All eigenpairs via n products with basis vectors (n small); values descending.
EigResult dense_eigs(const LinearOp& op, int64_t n);
// The dense matrix itself, symmetrised, from the images A e_j of the basis vectors. per_pass > 1 hands
// op that many at once, as the rows of a matrix (for an op that takes several directions, such as
// HvpOperator's products).
torch::Tensor dense_matrix(const LinearOp& op, int64_t n, int64_t per_pass = 1);

}  // namespace bs
