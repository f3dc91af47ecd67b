// One core's float32 multiply-add peak: twelve independent chains of 16-float AVX-512 fused multiply-adds
// (enough in flight for two FMA pipes of latency 4-6), timed over 2.4G instructions, repeated three times;
// prints the best in GFLOP/s (2 x 16 per instruction). The ceiling that the training step's matrix
// products (sgemm_time_shim.cpp's per-shape GFLOP/s) are set against. Not part of the build:
//   g++ -O2 -mavx512f tools/experiments/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

int main() {
  constexpr int kChains = 12;
  constexpr long kSteps = 200000000;
  double best = 0;
  float sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    __m512 acc[kChains];
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-8f);
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
    const auto t0 = std::chrono::steady_clock::now();
    for (long s = 0; s < kSteps; ++s) {
#pragma GCC unroll 12
      for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * 16 * kChains * static_cast<double>(kSteps) / seconds / 1e9);
    alignas(64) float lanes[16];
    for (int i = 0; i < kChains; ++i) {  // keeps the chains alive
      _mm512_store_ps(lanes, acc[i]);
      for (const float x : lanes) sink += x;
    }
  }
  std::printf("fma_peak: %.1f GFLOP/s on one core (float32, AVX-512 FMA; checksum %g)\n", best, sink);
}
