// How much of a run is oneDNN's sgemm: an LD_PRELOAD library that puts itself in front of dnnl_sgemm
// (src/gemm.cpp looks it up with dlsym(RTLD_DEFAULT), so the preloaded one is found first), times every
// call and prints the total, the calls and the GFLOP/s at exit. Not part of the build. E.g. the share
// of products in `bench train`'s steps (2 untimed steps + --steps, each its share of the total):
//   g++ -O2 -shared -fPIC tools/experiments/sgemm_time_shim.cpp -o /tmp/sgemm_time_shim.so -ldl
//   LD_PRELOAD=/tmp/sgemm_time_shim.so build/bin/blocksharp bench train --models gpt2-small-cpu \
//     --python none --gemm onednn --rounds 1 --steps 40 --threads 1 | grep step_ms
#include <dlfcn.h>

#include <chrono>
#include <cstdint>
#include <cstdio>

namespace {
double g_seconds = 0, g_flop = 0;
int64_t g_calls = 0;
using Sgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                      float*, int64_t);
}  // namespace

extern "C" int dnnl_sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static const auto real = reinterpret_cast<Sgemm>(dlsym(RTLD_NEXT, "dnnl_sgemm"));
  const auto t0 = std::chrono::steady_clock::now();
  const int status = real(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  g_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  g_flop += 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  ++g_calls;
  return status;
}

__attribute__((destructor)) static void report() {
  if (g_calls > 0)
    std::fprintf(stderr, "sgemm_time_shim: %.3f s in %lld calls, %.2f GFLOP, %.1f GFLOP/s\n", g_seconds,
                 static_cast<long long>(g_calls), g_flop / 1e9, g_flop / g_seconds / 1e9);
}
