// Partition scoring.
#include "structure.h"

#include <cmath>

#include "errors.h"
#include "h5io.h"
#include "spectral.h"
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
  if (probes < 2) throw UserError(param("probes") + " must be at least 2");
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

StructureResult run_structure(const Context& c, const StructureOptions& o) {
  if (o.params.empty()) throw UserError(param("param") + " is required");
  if (!(o.threshold > 0 && o.threshold <= 1)) throw UserError(param("threshold") + " must be in (0, 1]");
  if (o.per_pass < 1) throw UserError(param("per_pass") + " must be at least 1");
  std::vector<Batch> batches;
  for (int64_t b = 0; b < o.batches; ++b) batches.push_back(c.train_batch(b));
  HvpOperator H(*c.net, batches, c.loss, c.data, {o.curvature, c.seed});
  std::vector<size_t> idx;
  for (const auto& name : o.params) idx.push_back(H.table().index_of(name));
  const int64_t n = H.block_size(idx);
  std::vector<Candidate> cands;
  if (idx.size() == 1) {
    const auto& e = H.table().at(idx[0]);
    const auto& info = c.net->info();
    const bool attention = e.kind == BlockKind::QK || e.kind == BlockKind::VO;
    const int64_t heads = attention ? info.n_heads : 0;
    const int64_t head_rows = heads > 0 && info.dim > 0 ? info.dim / heads : 0;
    cands = candidate_partitions(e.shape, head_rows);
  } else {
    cands = candidate_partitions({n}, 0);  // whole and per-element
    Candidate per_tensor;
    per_tensor.name = "per-tensor";
    for (size_t k = 0; k < idx.size(); ++k)
      per_tensor.block_of.insert(per_tensor.block_of.end(), H.table().at(idx[k]).numel, static_cast<int64_t>(k));
    per_tensor.n_blocks = static_cast<int64_t>(idx.size());
    cands.insert(cands.begin() + 1, per_tensor);
  }
  StructureResult r;
  r.n = n;
  r.shape = idx.size() == 1 ? H.table().at(idx[0]).shape : std::vector<int64_t>{n};
  const bool dense = r.dense = n <= o.max_dense;
  torch::Tensor& Hd = r.hessian;
  if (dense) {
    Progress bar("dense Hessian: products", n);
    const LinearOp columns = [&](const torch::Tensor& E) {
      auto Y = H.apply_block(idx, E);
      bar.update(H.n_hvp());
      return Y;
    };
    Hd = dense_matrix(columns, n, o.per_pass);
    bar.finish();
    score_dense(Hd, cands);
  } else {
    score_randomized(H.block_op(idx), n, o.probes, c.seed, cands);
  }
  const Candidate& best = recommend(cands, o.threshold);
  r.best = static_cast<size_t>(&best - cands.data());
  r.candidates = std::move(cands);
  r.n_hvp = H.n_hvp();
  return r;
}

void write_structure_h5(const std::string& path, const StructureResult& r, const Context& c,
                        const StructureOptions& o) {
  const bool dense = r.dense;
  H5Output out(path);
  if (dense) out.write("/hessian", r.hessian);
  out.write("/param/names", o.params);
  out.write("/param/shape", r.shape);
  std::vector<std::string> names;
  std::vector<int64_t> nb;
  std::vector<double> fr, se;
  for (const auto& c : r.candidates) {
    names.push_back(c.name);
    nb.push_back(c.n_blocks);
    fr.push_back(c.fraction);
    se.push_back(c.fraction_stderr);
    out.write("/partitions/block_of/" + c.name, c.block_of);
  }
  out.write("/partitions/name", names);
  out.write("/partitions/n_blocks", nb);
  out.write("/partitions/fraction", fr);
  out.write("/partitions/fraction_stderr", se);
  out.write("/recommended", std::vector<std::string>{r.candidates[r.best].name});
  out.write("/threshold", o.threshold);
  out.provenance();
  out.attribute("model", c.model);
  out.attribute("method", dense ? "dense" : "randomized");
  out.attribute("curvature", word_of(o.curvature, curvature_words()));
  out.commit();
}

}  // namespace bs
