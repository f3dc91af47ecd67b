// Sample means and standard errors (unbiased sample variance / probes) of z^T H z per block.
#include "hutchinson.h"

#include <cmath>

#include "errors.h"
#include "progress.h"

namespace bs {

TraceResult hutchinson(const LinearOp& op, const ParamTable& table, int64_t probes, uint64_t seed,
                       torch::Dtype dtype) {
  if (probes < 2) throw UserError("--probes must be at least 2 (the standard error needs two samples)");
  const size_t B = table.size();
  std::vector<std::vector<double>> samples(B + 1, std::vector<double>(probes));
  std::mt19937_64 rng(seed);
  Progress bar("trace", probes);
  for (int64_t s = 0; s < probes; ++s) {
    auto z = rademacher(table.total_numel(), rng, dtype);
    auto zhz = (z * op(z).to(dtype)).to(torch::kFloat64);
    double total = 0;
    for (size_t b = 0; b < B; ++b) {
      const auto& e = table.at(b);
      samples[b][s] = zhz.narrow(0, e.offset, e.numel).sum().item<double>();
      total += samples[b][s];
    }
    samples[B][s] = total;
    bar.update(s + 1);
  }
  auto mean_se = [probes](const std::vector<double>& x) {
    double m = 0;
    for (double v : x) m += v;
    m /= probes;
    double var = 0;
    for (double v : x) var += (v - m) * (v - m);
    var /= (probes - 1);
    return std::make_pair(m, std::sqrt(var / probes));
  };
  TraceResult r;
  r.n_products = probes;
  for (size_t b = 0; b < B; ++b) {
    auto [m, se] = mean_se(samples[b]);
    r.block_trace.push_back(m);
    r.block_stderr.push_back(se);
  }
  std::tie(r.trace, r.stderr_) = mean_se(samples[B]);
  return r;
}

}  // namespace bs
