// Block structure of one tensor's Hessian H_tt (Adam-mini's principle: blocks = the smallest dense
// diagonal sub-blocks; Zhang et al. 2024). Scores candidate partitions by the fraction of the squared
// Frobenius mass inside their diagonal blocks: exactly from the dense matrix, or by an unbiased
// randomized estimate for tensors too large to form.
#pragma once
#include <string>
#include <vector>

#include "hvp_operator.h"
#include "context.h"

namespace bs {

struct Candidate {
  std::string name;  // whole | per-head | per-row | per-column | per-element
  int64_t n_blocks = 0;
  std::vector<int64_t> block_of;  // block id of every flat index (row-major)
  double fraction = 0;            // diagonal-block share of ||H||_F^2
  double fraction_stderr = 0;     // randomized estimate only
};

// Candidates for a tensor of `shape`; per-head needs head_rows (rows per head) dividing the rows.
std::vector<Candidate> candidate_partitions(const std::vector<int64_t>& shape, int64_t head_rows);

// Exact fractions from a dense symmetric matrix.
void score_dense(const torch::Tensor& H, std::vector<Candidate>& cands);

// Randomized: per probe, two blockwise sign-flipped Rademacher products give an unbiased estimate of
// sum_b ||H_bb z_b||^2 (cross-block terms cancel in expectation) and of ||H z||^2.
void score_randomized(const LinearOp& op, int64_t n, int64_t probes, uint64_t seed, std::vector<Candidate>& cands);

// Finest candidate (most blocks) whose fraction is at least `threshold`.
const Candidate& recommend(const std::vector<Candidate>& cands, double threshold);

// `blocksharp structure` and blocksharp.curvature.structure: one tensor's (or a named set's) Hessian,
// dense when it has at most max_dense entries, scored against the candidate partitions.
struct StructureOptions {
  std::vector<std::string> params;
  double threshold = 0.9;
  int64_t max_dense = 4096;
  int64_t per_pass = 1;
  int64_t probes = 30;
  int64_t batches = 1;
  Curvature curvature = Curvature::Hessian;
};

struct StructureResult {
  int64_t n = 0;               // entries of the block
  std::vector<int64_t> shape;  // the tensor's, or {n} for a set
  bool dense = false;
  torch::Tensor hessian;  // dense only
  std::vector<Candidate> candidates;
  size_t best = 0;  // the recommended candidate
  int64_t n_hvp = 0;
};
StructureResult run_structure(const Context& c, const StructureOptions& o);
// DIR/structure.h5 (DESIGN.md paths), written atomically.
void write_structure_h5(const std::string& path, const StructureResult& r, const Context& c, const StructureOptions& o);

}  // namespace bs
