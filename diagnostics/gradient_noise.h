// The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish, Kaplan, Amodei et al. 2018, "An
// Empirical Model of Large-Batch Training"), globally and per ParamTable block, from the gradients of K
// fixed batches of b rows: the batch size beyond which larger batches stop paying for themselves.
// With g_1..g_K the batch gradients, G their mean and S each entry's unbiased variance across the
// batches (the batch gradient's covariance diagonal, Sigma/b for rows drawn independently):
//   tr(Sigma) = b sum S,   |G|^2 = |mean g|^2 - sum S / K (unbiased),   B_simple = tr(Sigma) / |G|^2,
// in rows (sequences for text, examples for images). A non-positive |G|^2 estimate (noise swamps the
// signal) gives B_simple = +inf. Compare SGD-SaI's g-SNR (gsnr.h): that is the spread of the entries of
// one gradient, not the spread of the gradient across batches; 1/B_simple is the latter's SNR per row.
#pragma once
#include <functional>
#include <vector>

#include "context.h"
#include "param_table.h"

namespace bs {

struct NoiseScale {
  double tr_sigma = NAN;  // per-row covariance trace
  double g_sq = NAN;      // unbiased |G|^2
  double b_simple = NAN;  // tr_sigma / g_sq, in rows
};

struct GradientNoise {
  int64_t batches = 0, rows = 0;  // K and b
  NoiseScale global;
  std::vector<NoiseScale> blocks;  // per table.blocks() entry
};

// Streaming (Welford, float64) over flat gradients: add each batch's, then finish.
class NoiseAccumulator {
 public:
  void add(const torch::Tensor& flat_gradient);
  // Sums over each block's coordinates of `table` (a fused tensor's slices separately) and over all.
  GradientNoise finish(const ParamTable& table, int64_t rows) const;

 private:
  int64_t m_k = 0;
  torch::Tensor m_mean, m_m2;
};

// NoiseScale from the sums over a set of coordinates: sum S, sum mean^2, K and b.
NoiseScale noise_scale(double sum_var, double sum_mean_sq, int64_t batches, int64_t rows);

// From the gradients of batch(0..batches-1) (each the whole batch's under data parallelism: every rank
// holds its share). batches must be at least 2. Profile takes c.train_batch; the tracer the rows of
// its probe batch one at a time.
GradientNoise gradient_noise(const Context& c, const ParamTable& table, const std::function<Batch(int64_t)>& batch,
                             int64_t batches);

}  // namespace bs
