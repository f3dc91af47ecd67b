// The arithmetic of each optimizer, written once: elementwise functors marked host+device, driven by
// the CPU loop (cpu_loop.h) and by the CUDA kernels (cuda/fused_kernels.cu). Per-step scalars (bias
// corrections, learning rates) are folded in on the host.
#pragma once
#include <cmath>

#include "hostdevice.h"

namespace bs {

// AdamW with PyTorch semantics (Loshchilov & Hutter 2019; torch.optim.AdamW): decoupled decay first,
// m and v updated, denom = sqrt(v)/sqrt(bc2) + eps, p -= lr/bc1 * m/denom.
template <class T>
struct AdamWUpdate {
  T decay;  // 1 - lr*wd
  T beta1, one_minus_beta1, beta2, one_minus_beta2;
  T inv_sqrt_bc2, eps, step_size;  // step_size = lr / bc1
  BS_HD void operator()(T& p, T g, T& m, T& v) const {
    p *= decay;
    m = m * beta1 + g * one_minus_beta1;
    v = v * beta2 + g * g * one_minus_beta2;
    const T denom = std::sqrt(v) * inv_sqrt_bc2 + eps;
    p += -step_size * (m / denom);
  }
};

// Adam-mini v1.1.1 (Zhang et al. 2024): the block's v is the EMA of mean(g^2) over the block (updated
// by the block driver); per element: decoupled decay, m = beta1 m + (1-beta1) g, p -= lr/bc1 * m / h with
// h = sqrt(v_block)/sqrt(bc2) + eps (eps after the bias-corrected sqrt). The driver passes 1/h, once
// per block: a multiply per element instead of a division (within an ulp of m / h).
template <class T>
struct AdamMiniUpdate {
  T decay, beta1, one_minus_beta1, step_size;
  BS_HD void operator()(T& p, T g, T& m, T inv_h) const {
    p *= decay;
    m = m * beta1 + g * one_minus_beta1;
    p += -step_size * (m * inv_h);
  }
};

// SGD-SaI (Xu et al. 2024): decay before the step, momentum buffer = g on the first step then
// EMA mu*buf + (1-mu)*g, p -= (lr * gsnr) * buf. No bias correction.
template <class T>
struct SgdSaiUpdate {
  T decay, mu, one_minus_mu, scaled_lr;  // scaled_lr = lr * gsnr of the tensor
  bool first;
  BS_HD void operator()(T& p, T g, T& buf) const {
    p *= decay;
    buf = first ? g : buf * mu + g * one_minus_mu;
    p += -scaled_lr * buf;
  }
};

// Hugging Face-style Adam moments (GaLore, APOLLO): m, v EMAs of r, returns m / (sqrt(v) + eps) with eps on
// the raw sqrt(v); the bias correction lives in the step size lr * sqrt(bc2) / bc1.
template <class T>
struct HfAdamMoments {
  T beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  BS_HD T operator()(T r, T& m, T& v) const {
    m = m * beta1 + r * one_minus_beta1;
    v = v * beta2 + r * r * one_minus_beta2;
    return m / (std::sqrt(v) + eps);
  }
};

// Coordinate-wise clipping (Pan & Li 2023): |g| below tau passes, else sign(g) * tau (0 for NaN).
// Every comparison is made unconditionally and the rest are selects, so GCC vectorizes the update
// loops (a comparison behind && or ?: may not be speculated under -ftrapping-math).
template <class T>
BS_HD T clip_coordinate(T g, T tau) {
  const bool inside = (g < tau) & (g > -tau), positive = g > 0, negative = g < 0;
  const T clipped = positive ? tau : (negative ? -tau : T(0));
  return inside ? g : clipped;
}

// SGDClip step (torch.SGD semantics after clipping, coupled L2 decay): d = clip(g) + wd p;
// buf = d on the first step, else mu buf + d; p -= lr buf.
template <class T>
struct SgdClipUpdate {
  T tau, wd, mu, lr;
  bool first;
  BS_HD void operator()(T& p, T g, T& buf) const {
    const T d = clip_coordinate(g, tau) + wd * p;
    buf = first ? d : buf * mu + d;
    p += -lr * buf;
  }
};

// AdamClip step: g' = g + wd p (coupled), m from clip(g'), v from the unclipped g' (torch.Adam style).
template <class T>
struct AdamClipUpdate {
  T tau, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bc2, eps, step_size;
  BS_HD void operator()(T& p, T g, T& m, T& v) const {
    const T gd = g + wd * p;
    m = m * beta1 + clip_coordinate(gd, tau) * one_minus_beta1;
    v = v * beta2 + gd * gd * one_minus_beta2;
    p += -step_size * (m / (std::sqrt(v) * inv_sqrt_bc2 + eps));
  }
};

// AdaPM's step once its momentum estimate d is formed: decoupled decay, then p -= step * d / h with the
// block's h = sqrt(v_block)/sqrt(bc2) + eps (Adam-mini's second moment).
template <class T>
struct ScaledUpdate {
  T decay, step_size;
  BS_HD void operator()(T& p, T d, T h) const {
    p *= decay;
    p += -step_size * (d / h);
  }
};

// FRUGAL's state-free update of the residual coordinates: signSGD (the default inactive rule).
template <class T>
struct SignUpdate {
  T lr;
  BS_HD void operator()(T& p, T g) const { p += -lr * T((g > 0) - (g < 0)); }
};

}  // namespace bs
