// The gradient signal-to-noise ratio of one block, SGD-SaI's g-SNR (ALGORITHMS.md):
// ||g||_2 / (std(g) + eps), std unbiased over the block's entries, 0 for a one-entry block (so its
// g-SNR is |g| / eps, as in the official code). In float64 whatever g's dtype. profile's
// /blocks/gsnr and the SGD-SaI optimizer's first-step measurement both come from here.
#pragma once
#include <torch/torch.h>

#include <cmath>

namespace bs {

inline double gsnr(const torch::Tensor& g, double eps = 1e-8) {
  const auto gd = g.to(torch::kFloat64).reshape({-1});
  double sd = gd.numel() > 1 ? gd.std(/*unbiased=*/true).item<double>() : 0.0;
  if (std::isnan(sd)) sd = 0.0;
  return gd.norm().item<double>() / (sd + eps);
}

}  // namespace bs
