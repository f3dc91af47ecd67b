// Partition scoring.
#include "structure.h"

#include <cmath>

#include "errors.h"
#include "progress.h"

namespace bs {

std::vector<Candidate> candidate_partitions(const std::vector<int64_t>& shape, int64_t head_rows) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const int64_t rows = shape.empty() ? 1 : shape[0];
  const int64_t cols = rows > 0 ? n / rows : 0;
  auto make = [&](const std::string& name, auto block) {
    Candidate c;
    c.name = name;
    c.block_of.resize(n);
    for (int64_t i = 0; i < n; ++i)
      c.block_of[i] = block(i / std::max<int64_t>(cols, 1), i % std::max<int64_t>(cols, 1), i);
    c.n_blocks = *std::max_element(c.block_of.begin(), c.block_of.end()) + 1;
    return c;
  };
  std::vector<Candidate> out;
  out.push_back(make("whole", [](int64_t, int64_t, int64_t) { return int64_t{0}; }));
  if (shape.size() >= 2) {
    if (head_rows > 0 && rows % head_rows == 0 && rows / head_rows > 1)
      out.push_back(make("per-head", [head_rows](int64_t r, int64_t, int64_t) { return r / head_rows; }));
    out.push_back(make("per-row", [](int64_t r, int64_t, int64_t) { return r; }));
    out.push_back(make("per-column", [](int64_t, int64_t c, int64_t) { return c; }));
  }
  out.push_back(make("per-element", [](int64_t, int64_t, int64_t i) { return i; }));
  return out;
}

void score_dense(const torch::Tensor& H, std::vector<Candidate>& cands) {
  auto sq = H.to(torch::kFloat64).pow(2).contiguous();
  const double total = sq.sum().item<double>();
  const int64_t n = H.size(0);
  const double* p = sq.data_ptr<double>();
  for (auto& c : cands) {
    double inside = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        if (c.block_of[i] == c.block_of[j]) inside += p[i * n + j];
    c.fraction = total > 0 ? inside / total : 1.0;
    c.fraction_stderr = 0;
  }
}

void score_randomized(const LinearOp& op, int64_t n, int64_t probes, uint64_t seed, std::vector<Candidate>& cands) {
  if (probes < 2) throw UserError("--probes must be at least 2");
  std::mt19937_64 rng(seed);
  const size_t C = cands.size();
  std::vector<std::vector<double>> inside(C, std::vector<double>(probes));
  std::vector<double> total(probes);
  Progress bar("structure probes", probes);
  for (int64_t s = 0; s < probes; ++s) {
    auto z = rademacher(n, rng, torch::kFloat64);
    double tot = 0;
    for (size_t c = 0; c < C; ++c) {
      // Two independent blockwise sign patterns: E[y . y'] = sum_b ||H_bb z_b||^2.
      auto block_of = torch::from_blob(cands[c].block_of.data(), {n}, torch::kInt64);
      auto signs_a = rademacher(cands[c].n_blocks, rng, torch::kFloat64).index_select(0, block_of);
      auto signs_b = rademacher(cands[c].n_blocks, rng, torch::kFloat64).index_select(0, block_of);
      auto ya = signs_a * op(signs_a * z).to(torch::kFloat64);
      auto yb = signs_b * op(signs_b * z).to(torch::kFloat64);
      inside[c][s] = ya.dot(yb).item<double>();
      tot += 0.5 * (ya.pow(2).sum().item<double>() + yb.pow(2).sum().item<double>());  // ||H z~||^2, z~ Rademacher
    }
    total[s] = tot / static_cast<double>(C);
    bar.update(s + 1);
  }
  double tot_mean = 0;
  for (double t : total) tot_mean += t / probes;
  for (size_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (double x : inside[c]) m += x / probes;
    for (double x : inside[c]) v += (x - m) * (x - m) / (probes - 1);
    cands[c].fraction = m / tot_mean;
    cands[c].fraction_stderr = std::sqrt(v / probes) / tot_mean;
  }
}

const Candidate& recommend(const std::vector<Candidate>& cands, double threshold) {
  const Candidate* best = &cands.front();
  for (const auto& c : cands)
    if (c.fraction >= threshold && c.n_blocks > best->n_blocks) best = &c;
  return *best;
}

}  // namespace bs
