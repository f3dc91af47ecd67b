// Every CUDA launcher of optimizers/cuda against the CPU arithmetic, in float64: three steps on random
// data must equal the same functor run by a host loop (the CPU path's arithmetic) to 1e-12 relative, and
// for AdamW, Adam-mini and SGD-SaI also the independent scalar references (reference_optimizers.h).
// Standalone: it needs the CUDA runtime (linked statically) and header-only code, not LibTorch, so the
// binary runs as is on a GPU machine without packages. Without a device it says so and exits 77, which
// CTest reports as skipped. Build: cmake --build build --target test_cuda_kernels; run:
// build/bin/test_cuda_kernels.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "reference_optimizers.h"
#include "cuda/fused_kernels.h"

namespace {

using Vec = std::vector<double>;
int g_failures = 0;

void check(const std::string& what, const Vec& got, const Vec& want, double tol = 1e-12) {
  double worst = 0, scale = 1e-300;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  const bool ok = got.size() == want.size() && worst <= tol * scale;
  std::printf("%s %-40s max |diff| / max |want| = %.3g\n", ok ? "ok  " : "FAIL", what.c_str(), worst / scale);
  g_failures += !ok;
}

Vec random_vec(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Device copies of host vectors, copied back on demand.
struct Dev {
  std::vector<double*> ptrs;
  double* up(const Vec& v) {
    double* d = nullptr;
    cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(double));
    cudaMemcpy(d, v.data(), v.size() * sizeof(double), cudaMemcpyHostToDevice);
    ptrs.push_back(d);
    return d;
  }
  static Vec down(const double* d, size_t n) {
    Vec v(n);
    cudaDeviceSynchronize();
    cudaMemcpy(v.data(), d, n * sizeof(double), cudaMemcpyDeviceToHost);
    return v;
  }
  ~Dev() {
    for (double* p : ptrs) cudaFree(p);
  }
};

const bs::reference::Hyper kH{1e-2, 0.1, 0.9, 0.999, 1e-8};

void adamw() {
  const size_t n = 5000;
  Vec p = random_vec(n, 1), m(n, 0), v(n, 0), hp = p, hm = m, hv = v, rp = p, rm = m, rv = v;
  Dev dev;
  double *dp = dev.up(p), *dm = dev.up(m), *dv = dev.up(v);
  for (int t = 1; t <= 3; ++t) {
    const Vec g = random_vec(n, 100 + t);
    const double bc1 = 1 - std::pow(kH.beta1, t), bc2 = 1 - std::pow(kH.beta2, t);
    const bs::AdamWUpdate<double> f{1 - kH.lr * kH.wd, kH.beta1,           1 - kH.beta1, kH.beta2,
                                    1 - kH.beta2,      1 / std::sqrt(bc2), kH.eps,       kH.lr / bc1};
    Dev gd;
    bs::cuda::adamw_step(f, dp, gd.up(g), dm, dv, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i) f(hp[i], g[i], hm[i], hv[i]);
    bs::reference::adamw(rp, g, rm, rv, t, kH);
  }
  check("adamw: kernel == host functor", Dev::down(dp, n), hp);
  check("adamw: kernel == scalar reference", Dev::down(dp, n), rp);
}

void adam_mini() {
  const size_t block = 300, blocks = 7, n = block * blocks;  // block > threads: each thread sums several
  Vec p = random_vec(n, 2), m(n, 0), vb(blocks, 0), hp = p, hm = m, hvb = vb, rp = p, rm = m, rvb = vb;
  Dev dev;
  double *dp = dev.up(p), *dm = dev.up(m), *dvb = dev.up(vb);
  for (int t = 1; t <= 3; ++t) {
    const Vec g = random_vec(n, 200 + t);
    const double bc1 = 1 - std::pow(kH.beta1, t), bc2 = 1 - std::pow(kH.beta2, t);
    const bs::AdamMiniUpdate<double> f{1 - kH.lr * kH.wd, kH.beta1, 1 - kH.beta1, kH.lr / bc1};
    Dev gd;
    bs::cuda::adam_mini_step(f, kH.beta2, 1 - kH.beta2, 1 / std::sqrt(bc2), kH.eps, dp, gd.up(g), dm, dvb,
                             static_cast<int64_t>(block), static_cast<int64_t>(blocks), nullptr);
    for (size_t b = 0; b < blocks; ++b) {  // the CPU block driver: mean(g^2) in T, then the functor
      double sq = 0;
      for (size_t k = 0; k < block; ++k) sq += g[b * block + k] * g[b * block + k];
      hvb[b] = hvb[b] * kH.beta2 + sq / double(block) * (1 - kH.beta2);
      const double inv_h = 1 / (std::sqrt(hvb[b]) / std::sqrt(bc2) + kH.eps);
      for (size_t k = 0; k < block; ++k) f(hp[b * block + k], g[b * block + k], hm[b * block + k], inv_h);
    }
    bs::reference::adam_mini(rp, g, rm, rvb, block, t, kH);
  }
  check("adam-mini: kernel == host block driver", Dev::down(dp, n), hp);
  check("adam-mini: v_block == host", Dev::down(dvb, blocks), hvb);
  check("adam-mini: kernel == scalar reference", Dev::down(dp, n), rp);
}

void sgd_sai() {
  const size_t n = 3000;
  Vec p = random_vec(n, 3), buf(n, 0), hp = p, hbuf = buf, rp = p, rbuf = buf;
  double snr = 0;
  Dev dev;
  double *dp = dev.up(p), *dbuf = dev.up(buf);
  for (int t = 1; t <= 3; ++t) {
    const Vec g = random_vec(n, 300 + t);
    bs::reference::sgd_sai(rp, g, rbuf, snr, t, kH);  // measures the g-SNR at t = 1
    const bs::SgdSaiUpdate<double> f{1 - kH.lr * kH.wd, kH.beta1, 1 - kH.beta1, kH.lr * snr, t == 1};
    Dev gd;
    bs::cuda::sgd_sai_step(f, dp, gd.up(g), dbuf, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i) f(hp[i], g[i], hbuf[i]);
  }
  check("sgd-sai: kernel == host functor", Dev::down(dp, n), hp);
  check("sgd-sai: kernel == scalar reference", Dev::down(dp, n), rp);
}

void elementwise_rest() {
  const size_t n = 4097;
  const Vec g = random_vec(n, 4), p0 = random_vec(n, 5);
  {  // GaLore / APOLLO moments
    const bs::HfAdamMoments<double> f{0.9, 0.1, 0.999, 0.001, 1e-6};
    Vec m(n, 0.1), v(n, 0.2), out(n, 0), hm = m, hv = v, hout(n);
    Dev dev;
    double *dm = dev.up(m), *dv = dev.up(v), *dout = dev.up(out);
    bs::cuda::hf_moments(f, dev.up(g), dout, dm, dv, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i) hout[i] = f(g[i], hm[i], hv[i]);
    check("hf_moments: out == host functor", Dev::down(dout, n), hout);
    check("hf_moments: v == host functor", Dev::down(dv, n), hv);
  }
  {  // sgd-clip, adam-clip
    const bs::SgdClipUpdate<double> f{0.5, 0.01, 0.9, 1e-2, true};
    Vec p = p0, buf(n, 0), hp = p, hbuf = buf;
    Dev dev;
    double *dp = dev.up(p), *dbuf = dev.up(buf);
    bs::cuda::sgd_clip_step(f, dp, dev.up(g), dbuf, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i) f(hp[i], g[i], hbuf[i]);
    check("sgd-clip: kernel == host functor", Dev::down(dp, n), hp);
    const bs::AdamClipUpdate<double> a{0.5, 0.01, 0.9, 0.1, 0.999, 0.001, 1 / std::sqrt(0.001), 1e-8, 1e-2 / 0.1};
    Vec m(n, 0), v(n, 0), hm = m, hv = v;
    hp = p0;
    double *dp2 = dev.up(p0), *dm = dev.up(m), *dv = dev.up(v);
    bs::cuda::adam_clip_step(a, dp2, dev.up(g), dm, dv, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i) a(hp[i], g[i], hm[i], hv[i]);
    check("adam-clip: kernel == host functor", Dev::down(dp2, n), hp);
  }
  {  // FRUGAL's signSGD on the inactive coordinates
    const bs::SignUpdate<double> f{1e-3};
    std::vector<uint8_t> active(n);
    for (size_t i = 0; i < n; ++i) active[i] = i % 3 == 0;
    Vec hp = p0;
    Dev dev;
    double* dp = dev.up(p0);
    uint8_t* da = nullptr;
    cudaMalloc(&da, n);
    cudaMemcpy(da, active.data(), n, cudaMemcpyHostToDevice);
    bs::cuda::sign_step(f, dp, dev.up(g), da, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i)
      if (!active[i]) f(hp[i], g[i]);
    check("frugal sign: kernel == host functor", Dev::down(dp, n), hp);
    cudaFree(da);
  }
  {  // AdaPM's scaled step, one h per block of 64
    const bs::ScaledUpdate<double> f{1 - 1e-4, 1e-2};
    const int64_t block = 64;
    Vec h(n / block + 1);
    for (size_t b = 0; b < h.size(); ++b) h[b] = 0.5 + 0.01 * double(b);
    Vec hp = p0;
    Dev dev;
    double* dp = dev.up(p0);
    bs::cuda::scaled_step(f, dp, dev.up(g), dev.up(h), block, static_cast<int64_t>(n), nullptr);
    for (size_t i = 0; i < n; ++i) f(hp[i], g[i], h[i / block]);
    check("adapm scaled: kernel == host functor", Dev::down(dp, n), hp);
  }
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t found = cudaGetDeviceCount(&devices);
  if (found != cudaSuccess || devices == 0) {
    std::printf("test_cuda_kernels: skipped, no CUDA device (%s)\n",
                found != cudaSuccess ? cudaGetErrorString(found) : "none found");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("test_cuda_kernels on %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  try {
    adamw();
    adam_mini();
    sgd_sai();
    elementwise_rest();
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("%d failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
