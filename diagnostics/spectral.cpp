// Spectra adapter and the two baselines. Spectra works in double; products run in the operator's dtype.
#include "spectral.h"

#include <Eigen/Dense>
#include <Spectra/SymEigsSolver.h>

#include <algorithm>
#include <cmath>

#include "errors.h"

namespace bs {

namespace {

// Spectra's operator concept over a LinearOp: rows(), cols(), perform_op(x, y).
class SpectraAdapter {
 public:
  using Scalar = double;
  SpectraAdapter(const LinearOp& op, int64_t n) : m_op(op), m_n(n) {}
  Eigen::Index rows() const { return m_n; }
  Eigen::Index cols() const { return m_n; }
  void perform_op(const double* x, double* y) const {
    auto in = torch::from_blob(const_cast<double*>(x), {m_n}, torch::kFloat64);
    auto out = m_op(in).to(torch::kFloat64).contiguous();
    // An operator that is exactly zero (a loss that does not depend on the parameters) breaks Lanczos
    // down on its first product. The start is random, and a random vector lies in a proper null space
    // with probability zero, so a zero first product means the operator is zero.
    if (m_first && out.abs().max().item<double>() == 0.0) throw ZeroOperator{};
    m_first = false;
    std::memcpy(y, out.data_ptr<double>(), sizeof(double) * m_n);
  }
  struct ZeroOperator {};

 private:
  const LinearOp& m_op;
  int64_t m_n;
  mutable bool m_first = true;
};

// The answer for the zero operator: eigenvalues 0, any orthonormal vectors, residuals 0.
EigResult zero_operator_result(int64_t n, int64_t k, int64_t products) {
  EigResult z;
  z.n_products = products;
  z.status = EigStatus::Converged;
  z.requested = k;
  for (int64_t i = 0; i < k; ++i) {
    auto e = torch::zeros({n}, torch::kFloat64);
    e[i] = 1.0;
    z.values.push_back(0.0);
    z.vectors.push_back(e);
    z.converged.push_back(true);
    z.residuals.push_back(0.0);
  }
  return z;
}

Spectra::SortRule rule(EigWhich which) {
  switch (which) {
    case EigWhich::LA:
      return Spectra::SortRule::LargestAlge;
    case EigWhich::SA:
      return Spectra::SortRule::SmallestAlge;
    case EigWhich::LM:
      return Spectra::SortRule::LargestMagn;
  }
  return Spectra::SortRule::LargestAlge;
}

void check_k(int64_t k, int64_t n) {
  if (k < 1) throw UserError(param("topk") + " must be at least 1");
  if (k >= n)
    throw UserError(param("topk") + " " + std::to_string(k) + " must be smaller than the number of parameters (" +
                    std::to_string(n) + ")");
}

void measure_residuals(const LinearOp& op, EigResult& r) {
  r.residuals.clear();
  for (size_t i = 0; i < r.values.size(); ++i) {
    auto av = op(r.vectors[i]).to(torch::kFloat64);
    r.residuals.push_back((av - r.values[i] * r.vectors[i]).norm().item<double>());
  }
}

}  // namespace

double block_lambda_max(HvpOperator& H, const std::vector<size_t>& blocks, double tol, uint64_t seed) {
  int64_t n = 0;
  const LinearOp op = H.table_block_op(blocks, &n);
  if (n <= 64) return dense_eigs(op, n).values.front();
  EigOptions eo;
  eo.k = 1;
  eo.tol = tol;
  eo.seed = seed;
  const auto r = lanczos_eigs(op, n, eo);
  return r.values.empty() ? NAN : r.values.front();
}

const char* to_string(EigWhich w) {
  switch (w) {
    case EigWhich::LA:
      return "LA";
    case EigWhich::SA:
      return "SA";
    case EigWhich::LM:
      return "LM";
  }
  return "?";
}

std::string describe_status(const EigResult& r) {
  switch (r.status) {
    case EigStatus::Converged:
      return "converged";
    case EigStatus::PartiallyConverged: {
      int64_t n = 0;
      for (bool c : r.converged) n += c;
      return "partially converged (" + std::to_string(n) + " of " + std::to_string(r.requested) + ")";
    }
    case EigStatus::NotConverged:
      return "not converged";
  }
  return "?";
}

int64_t default_ncv(int64_t n, int64_t k) { return std::min(n, std::max<int64_t>(2 * k + 1, 20)); }

namespace {
EigResult lanczos_once(const LinearOp& op, int64_t n, const EigOptions& opt);

// residual_i^2 / gap_i, gap_i the distance to the nearest other value (all k+1 computed).
std::vector<double> ritz_bounds(const EigResult& r) {
  std::vector<double> b;
  for (size_t i = 0; i < r.values.size(); ++i) {
    double gap = INFINITY;
    for (size_t j = 0; j < r.values.size(); ++j)
      if (j != i) gap = std::min(gap, std::abs(r.values[i] - r.values[j]));
    b.push_back(gap > 0 ? r.residuals[i] * r.residuals[i] / gap : INFINITY);
  }
  return b;
}

EigResult lanczos_to_accuracy(const LinearOp& op, int64_t n, const EigOptions& opt) {
  EigOptions o = opt;
  o.accuracy = 0;
  o.k = std::min(opt.k + 1, n - 1);  // the (k+1)-th gives the k-th its gap
  if (o.ncv > 0 && o.ncv <= o.k) o.ncv = o.k + 1;
  o.tol = std::sqrt(opt.accuracy);
  int64_t products = 0;
  EigResult r;
  for (int round = 0; round < 4; ++round) {
    r = lanczos_once(op, n, o);
    products += r.n_products;
    if (r.values.size() < static_cast<size_t>(o.k)) break;  // not converged: reported as such
    const auto bounds = ritz_bounds(r);
    double worst = 0;  // the largest bound over its allowance
    for (int64_t i = 0; i < opt.k; ++i)
      worst = std::max(worst, bounds[i] / (opt.accuracy * std::max(std::abs(r.values[i]), 1e-300)));
    r.error_bounds = bounds;
    if (worst <= 1) break;
    // The bound scales with the residual squared: tighten by the square root of the excess, with margin.
    o.tol *= std::clamp(0.5 / std::sqrt(worst), 1e-4, 0.5);
    auto start = torch::zeros({n}, torch::kFloat64);
    for (const auto& v : r.vectors) start += v;
    o.start = start;
  }
  r.n_products = products;
  r.requested = opt.k;
  if (r.values.size() > static_cast<size_t>(opt.k)) {  // report the k asked for
    r.values.resize(opt.k);
    r.vectors.resize(opt.k);
    r.residuals.resize(opt.k);
    r.converged.resize(opt.k);
    if (!r.error_bounds.empty()) r.error_bounds.resize(opt.k);
  }
  return r;
}
}  // namespace

EigResult lanczos_eigs(const LinearOp& op, int64_t n, const EigOptions& opt) {
  check_k(opt.k, n);
  if (opt.accuracy > 0) return lanczos_to_accuracy(op, n, opt);
  return lanczos_once(op, n, opt);
}

namespace {
EigResult lanczos_once(const LinearOp& op, int64_t n, const EigOptions& opt) {
  const int64_t ncv = opt.ncv > 0 ? std::min(n, opt.ncv) : default_ncv(n, opt.k);
  if (ncv <= opt.k)
    throw UserError("Lanczos basis of " + std::to_string(ncv) + " vectors for " + std::to_string(opt.k) +
                    " eigenvalues: the basis must hold more vectors than the eigenvalues asked for");
  SpectraAdapter adapter(op, n);
  Spectra::SymEigsSolver<SpectraAdapter> solver(adapter, opt.k, ncv);
  Eigen::VectorXd start(n);
  if (opt.start.defined()) {
    auto s = opt.start.to(torch::kFloat64).contiguous();
    std::memcpy(start.data(), s.data_ptr<double>(), sizeof(double) * n);
  } else {
    std::mt19937_64 rng(opt.seed);
    auto s = gaussian(n, rng, torch::kFloat64);
    std::memcpy(start.data(), s.data_ptr<double>(), sizeof(double) * n);
  }
  const auto sel = rule(opt.which);
  Eigen::Index nconv = 0;
  try {
    solver.init(start.data());  // runs the first product
    nconv = solver.compute(sel, opt.maxit, opt.tol, sel);
  } catch (const SpectraAdapter::ZeroOperator&) {
    return zero_operator_result(n, opt.k, 1);
  }
  EigResult r;
  r.n_products = solver.num_operations();
  r.requested = opt.k;
  r.status = solver.info() == Spectra::CompInfo::Successful ? EigStatus::Converged
             : nconv > 0                                    ? EigStatus::PartiallyConverged
                                                            : EigStatus::NotConverged;
  if (nconv > 0) {
    Eigen::VectorXd vals = solver.eigenvalues();
    Eigen::MatrixXd vecs = solver.eigenvectors();
    for (Eigen::Index i = 0; i < vals.size(); ++i) {
      r.values.push_back(vals[i]);
      r.vectors.push_back(torch::from_blob(vecs.col(i).data(), {n}, torch::kFloat64).clone());
      r.converged.push_back(true);
    }
  }
  measure_residuals(op, r);
  return r;
}
}  // namespace

EigResult power_eigs(const LinearOp& op, int64_t n, const EigOptions& opt) {
  check_k(opt.k, n);
  EigResult r;
  std::mt19937_64 rng(opt.seed);
  bool all = true;
  for (int64_t j = 0; j < opt.k; ++j) {
    // PyHessian: v ~ N(0,1) (here: the warm start for the first pair), deflate by Gram-Schmidt against
    // the pairs found, stop when |lambda - lambda_prev| / (|lambda_prev| + 1e-6) < tol.
    torch::Tensor v =
        (j == 0 && opt.start.defined()) ? opt.start.to(torch::kFloat64).clone() : gaussian(n, rng, torch::kFloat64);
    v /= v.norm() + 1e-6;
    double lambda = 0, prev = 0;
    bool conv = false;
    for (int64_t it = 0; it < opt.maxit; ++it) {
      for (const auto& u : r.vectors) v -= u.dot(v) * u;
      v /= v.norm() + 1e-6;
      auto hv = op(v).to(torch::kFloat64);
      ++r.n_products;
      lambda = hv.dot(v).item<double>();
      const double hn = hv.norm().item<double>();
      if (hn == 0.0) {  // v is in the null space: an eigenpair with eigenvalue 0, not a breakdown
        conv = true;
        break;
      }
      v = hv / (hn + 1e-6);
      if (it > 0 && std::abs(lambda - prev) / (std::abs(prev) + 1e-6) < opt.tol) {
        conv = true;
        break;
      }
      prev = lambda;
    }
    all = all && conv;
    for (const auto& u : r.vectors) v -= u.dot(v) * u;
    v /= v.norm();
    r.values.push_back(lambda);
    r.vectors.push_back(v);
    r.converged.push_back(conv);
  }
  measure_residuals(op, r);
  // PyHessian's test (the eigenvalue stopped moving) is necessary, not sufficient: a pair also needs
  // a residual below sqrt(tol) |lambda|, which bounds the eigenvalue's error by about tol |lambda|^2 / gap.
  for (size_t i = 0; i < r.values.size(); ++i)
    if (!(r.residuals[i] <= std::sqrt(opt.tol) * std::abs(r.values[i]) || r.residuals[i] == 0.0))
      r.converged[i] = false;
  all = std::all_of(r.converged.begin(), r.converged.end(), [](bool c) { return c; });
  r.status = all ? EigStatus::Converged : EigStatus::NotConverged;
  r.requested = opt.k;
  return r;
}

torch::Tensor dense_matrix(const LinearOp& op, int64_t n, int64_t per_pass) {
  TORCH_CHECK(per_pass >= 1, "dense_matrix: per_pass must be at least 1, got ", per_pass);
  auto H = torch::empty({n, n}, torch::kFloat64);
  for (int64_t j = 0; j < n; j += per_pass) {
    const int64_t m = std::min(per_pass, n - j);
    auto E = torch::zeros({m, n}, torch::kFloat64);
    E.narrow(1, j, m).fill_diagonal_(1.0);  // basis vectors e_j .. e_{j+m-1} as rows
    const auto Y = per_pass == 1 ? op(E[0]).unsqueeze(0) : op(E);
    H.narrow(1, j, m).copy_(Y.to(torch::kFloat64).t());
  }
  return 0.5 * (H + H.t());
}

EigResult dense_eigs(const LinearOp& op, int64_t n) {
  auto H = dense_matrix(op, n).contiguous();
  Eigen::Map<Eigen::MatrixXd> M(H.data_ptr<double>(), n, n);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(M);
  EigResult r;
  r.n_products = n;
  r.status = EigStatus::Converged;
  r.requested = n;
  for (int64_t i = n - 1; i >= 0; --i) {
    r.values.push_back(es.eigenvalues()[i]);
    Eigen::VectorXd col = es.eigenvectors().col(i);
    r.vectors.push_back(torch::from_blob(col.data(), {n}, torch::kFloat64).clone());
    r.converged.push_back(true);
    Eigen::VectorXd res = M * col - es.eigenvalues()[i] * col;
    r.residuals.push_back(res.norm());
  }
  return r;
}

}  // namespace bs
