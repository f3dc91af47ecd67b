// Sample means and standard errors (unbiased sample variance / probes) of z^T H z per block; Hutch++.
#include "hutchinson.h"

#include <cmath>

#include "errors.h"
#include "progress.h"

namespace bs {

namespace {
// The sum of x over every block's coordinates (ParamTable::blocks(): tensors, fused tensors' slices)
// and, last, over all.
std::vector<double> block_sums(const ParamTable& table, const torch::Tensor& x) {
  auto sums = table.block_sums(x);
  double total = 0;
  for (double v : sums) total += v;
  sums.push_back(total);
  return sums;
}

// Sample j of every block and of the total.
void record_sample(std::vector<std::vector<double>>& samples, const ParamTable& table, const torch::Tensor& x,
                   int64_t j) {
  const auto sums = block_sums(table, x);
  for (size_t b = 0; b < sums.size(); ++b) samples[b][j] = sums[b];
}

// Per block (and, last, the total): exact part + mean of the samples, standard error of the mean
// (unbiased sample variance / count).
TraceResult from_samples(const std::vector<std::vector<double>>& samples, const std::vector<double>& exact) {
  auto mean_se = [](const std::vector<double>& x) {
    const double count = static_cast<double>(x.size());
    double m = 0;
    for (double v : x) m += v;
    m /= count;
    double var = 0;
    for (double v : x) var += (v - m) * (v - m);
    var /= (count - 1);
    return std::make_pair(m, std::sqrt(var / count));
  };
  TraceResult r;
  const size_t B = samples.size() - 1;
  for (size_t b = 0; b < B; ++b) {
    auto [m, se] = mean_se(samples[b]);
    r.block_trace.push_back(exact[b] + m);
    r.block_stderr.push_back(se);
  }
  auto [m, se] = mean_se(samples[B]);
  r.trace = exact[B] + m;
  r.std_error = se;
  return r;
}
}  // namespace

TraceResult hutchinson(const LinearOp& op, const ParamTable& table, int64_t probes, uint64_t seed, torch::Dtype dtype) {
  if (probes < 2) throw UserError(param("probes") + " must be at least 2 (the standard error needs two samples)");
  const size_t B = table.blocks().size();
  std::vector<std::vector<double>> samples(B + 1, std::vector<double>(probes));
  std::mt19937_64 rng(seed);
  Progress bar("trace", probes);
  for (int64_t s = 0; s < probes; ++s) {
    auto z = rademacher(table.total_numel(), rng, dtype);
    record_sample(samples, table, (z * op(z).to(dtype)).to(torch::kFloat64), s);
    bar.update(s + 1);
  }
  TraceResult r = from_samples(samples, std::vector<double>(B + 1, 0.0));
  r.n_products = probes;
  r.estimator = "Hutchinson";
  return r;
}

TraceResult hutch_plus_plus(const LinearOp& op, const ParamTable& table, int64_t products, uint64_t seed,
                            torch::Dtype dtype) {
  if (products < 6 || products % 3 != 0)
    throw UserError(param("probes") + " " + std::to_string(products) + ": Hutch++ needs a multiple of 3, at least 6");
  const int64_t n = table.total_numel(), k = products / 3;
  const size_t B = table.blocks().size();
  std::mt19937_64 rng(seed);
  Progress bar("trace (Hutch++)", products);
  int64_t done = 0;
  auto apply = [&](const torch::Tensor& x) {
    auto y = op(x.to(dtype)).to(torch::kFloat64);
    bar.update(++done);
    return y;
  };
  // Sketch of the range, and H on its orthonormal basis.
  auto Y = torch::empty({n, k}, torch::kFloat64);
  for (int64_t i = 0; i < k; ++i) Y.select(1, i).copy_(apply(rademacher(n, rng, torch::kFloat64)));
  const auto Q = std::get<0>(torch::linalg_qr(Y, "reduced"));
  Y = torch::Tensor();
  auto sketched = torch::zeros({n}, torch::kFloat64);  // sum_i q_i * (H q_i), per coordinate
  for (int64_t i = 0; i < Q.size(1); ++i) {            // min(n, k) columns: k >= n sketches the whole space
    const auto q = Q.select(1, i).contiguous();
    sketched += q * apply(q);
  }
  // The rest: Rademacher probes with the sketched range projected out, w = (I - Q Q^T) g.
  std::vector<std::vector<double>> samples(B + 1, std::vector<double>(k));
  for (int64_t j = 0; j < k; ++j) {
    const auto g = rademacher(n, rng, torch::kFloat64);
    const auto w = g - torch::mv(Q, torch::mv(Q.t(), g));
    record_sample(samples, table, w * apply(w), j);
  }
  TraceResult r = from_samples(samples, block_sums(table, sketched));
  r.n_products = products;
  r.estimator = "Hutch++";
  return r;
}

}  // namespace bs
