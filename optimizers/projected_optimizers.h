// Low-rank projected optimizers: APOLLO / APOLLO-Mini (Zhu et al., MLSys 2025) and GaLore (Zhao et al.,
// ICML 2024). The 2-D weights of modules named "attn" or "mlp" are projected; every other tensor gets
// Hugging Face-style AdamW from the same optimizer, as in the official code.
#pragma once
#include "optimizer.h"

namespace bs {

bool is_projected_param(const std::string& name, const torch::Tensor& p);
// APOLLO's random projection: N(0,1)/sqrt(r), shape r x n (m >= n, right) or m x r (left), from `seed`.
torch::Tensor apollo_projection(int64_t m, int64_t n, int64_t r, uint64_t seed, torch::Dtype dtype);
// The next seed of the regeneration chain (splitmix64; the official chain uses PyTorch's generators).
uint64_t next_projection_seed(uint64_t seed);
// AdaPM: the momentum policy of a parameter (none | low-rank | full) and its orthonormal projection.
// AdaPM's momentum per tensor: none (embeddings, attention-out), low-rank (2-D Q/K/MLP), full (the rest).
enum class MomentumPolicy { None, LowRank, Full };
MomentumPolicy adapm_policy(const std::string& name, const torch::Tensor& p);
torch::Tensor adapm_projection(int64_t m, int64_t n, int64_t r, uint64_t seed, torch::Dtype dtype);
// A projected 2-D tensor's frame, shared by APOLLO / GaLore and AdaPM: rows x cols, rank r, the
// projection and the seed that regenerates it. Right-projected (R = G P^T, rows x r, P r x cols) when
// rows >= cols, else left (R = P^T G, r x cols, P rows x r).
struct LowRankFrame {
  int64_t rows = 0, cols = 0, rank = 0;
  uint64_t seed = 0;
  torch::Tensor proj;
  // The frame of `p` at rank min(rank, min(rows, cols)); the model's index-th tensor (0-based) is
  // seeded base_seed + index + 1, the official 1-based index.
  void frame(const torch::Tensor& p, int64_t rank, uint64_t base_seed, int64_t index);
  bool right() const { return rows >= cols; }
  torch::Tensor down(const torch::Tensor& G) const { return right() ? G.mm(proj.t()) : proj.t().mm(G); }
  torch::Tensor up(const torch::Tensor& x) const { return right() ? x.mm(proj) : proj.mm(x); }
  int64_t projected_numel() const { return (right() ? rows : cols) * rank; }   // R's
  int64_t projection_numel() const { return (right() ? cols : rows) * rank; }  // P's
};

// A projected tensor's checkpoint entries: "<name>/projection" and "<name>/seed" (what regenerates it).
StateWriter& save_projection(StateWriter& w, size_t i, const torch::Tensor& proj, uint64_t seed);
void load_projection(const StateReader& r, size_t i, torch::ScalarType dtype, torch::Tensor& proj, uint64_t& seed);
std::unique_ptr<Optimizer> make_projected(const std::string& name, const OptimizerInputs& in,
                                          const OptimizerOptions& o);

}  // namespace bs
