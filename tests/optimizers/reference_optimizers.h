// Scalar reference implementations (the llm.c way: the plain loop is the specification), written
// from the published formulas independently of update_functors.h. Float64, one element at a time.
#pragma once
#include <cmath>
#include <vector>

namespace bs::reference {

struct Hyper {
  double lr, wd, beta1, beta2, eps;
};

// torch.optim.AdamW: p *= 1 - lr wd; m, v EMAs; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
inline void adamw(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m, std::vector<double>& v,
                  int t, const Hyper& h) {
  const double bc1 = 1 - std::pow(h.beta1, t), bc2 = 1 - std::pow(h.beta2, t);
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = p[i] * (1 - h.lr * h.wd);
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
    p[i] = p[i] - h.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + h.eps);
  }
}

// Adam-mini v1.1.1 for one tensor cut into contiguous blocks of `block` elements:
// vmean_b = beta2 vmean_b + (1-beta2) mean_b(g^2); p *= 1 - lr wd; m = beta1 m + (1-beta1) g;
// p -= lr * (m / bc1) / (sqrt(vmean_b)/sqrt(bc2) + eps).
inline void adam_mini(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m,
                      std::vector<double>& vmean, size_t block, int t, const Hyper& h) {
  const double bc1 = 1 - std::pow(h.beta1, t), bc2 = 1 - std::pow(h.beta2, t);
  for (size_t b = 0; b < vmean.size(); ++b) {
    double mean = 0;
    for (size_t k = 0; k < block; ++k) mean += g[b * block + k] * g[b * block + k];
    mean /= static_cast<double>(block);
    vmean[b] = h.beta2 * vmean[b] + (1 - h.beta2) * mean;
    const double denom = std::sqrt(vmean[b]) / std::sqrt(bc2) + h.eps;
    for (size_t k = 0; k < block; ++k) {
      const size_t i = b * block + k;
      p[i] = p[i] * (1 - h.lr * h.wd);
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
      p[i] = p[i] - h.lr * (m[i] / bc1) / denom;
    }
  }
}

// SGD-SaI: gsnr = ||g1|| / (std(g1) + eps) fixed at t = 1 (std unbiased; 0 for one element);
// buf = g at t = 1, else mu buf + (1-mu) g; p = p (1 - lr wd) - lr gsnr buf.
inline double gsnr(const std::vector<double>& g, double eps) {
  double sum = 0, sq = 0;
  for (double x : g) sum += x, sq += x * x;
  double sd = 0;
  if (g.size() > 1) {
    const double mean = sum / static_cast<double>(g.size());
    double var = 0;
    for (double x : g) var += (x - mean) * (x - mean);
    sd = std::sqrt(var / static_cast<double>(g.size() - 1));
  }
  return std::sqrt(sq) / (sd + eps);
}

inline void sgd_sai(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& buf, double& snr, int t,
                    const Hyper& h) {
  if (t == 1) snr = gsnr(g, h.eps);
  for (size_t i = 0; i < p.size(); ++i) {
    buf[i] = t == 1 ? g[i] : h.beta1 * buf[i] + (1 - h.beta1) * g[i];
    p[i] = p[i] * (1 - h.lr * h.wd) - h.lr * snr * buf[i];
  }
}

}  // namespace bs::reference
