// How much of a run is oneDNN's sgemm: an LD_PRELOAD library that puts itself in front of dnnl_sgemm
// (src/gemm.cpp looks it up with dlsym(RTLD_DEFAULT), so the preloaded one is found first), times every
// call and prints the total, the calls and the GFLOP/s at exit; with SGEMM_SHIM_SHAPES=1 also a line per
// product shape (transposes, M, N, K, accumulating or not), to set against the core's peak
// (fma_peak.cpp). Not part of the build. E.g. the share of products in `bench train`'s steps (2
// untimed steps + --steps, each its share of the total):
//   g++ -O2 -shared -fPIC tools/experiments/sgemm_time_shim.cpp -o /tmp/sgemm_time_shim.so -ldl
//   LD_PRELOAD=/tmp/sgemm_time_shim.so SGEMM_SHIM_SHAPES=1 build/bin/blocksharp bench train \
//     --models gpt2-small-cpu --python none --gemm onednn --rounds 1 --steps 40 --threads 1 | grep step_ms
#include <dlfcn.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <tuple>

namespace {
struct Total {
  double seconds = 0, flop = 0;
  int64_t calls = 0;
  void add(double s, double f) { seconds += s, flop += f, ++calls; }
};
using Shape = std::tuple<char, char, int64_t, int64_t, int64_t, bool>;  // ta, tb, M, N, K, beta != 0
Total g_total;
std::map<Shape, Total>* g_shapes = nullptr;  // allocated on first use, never freed (read at exit)
using Sgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                      float*, int64_t);
}  // namespace

extern "C" int dnnl_sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static const auto real = reinterpret_cast<Sgemm>(dlsym(RTLD_NEXT, "dnnl_sgemm"));
  static const bool shapes = std::getenv("SGEMM_SHIM_SHAPES") && std::getenv("SGEMM_SHIM_SHAPES")[0] == '1';
  const auto t0 = std::chrono::steady_clock::now();
  const int status = real(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double flop = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  g_total.add(s, flop);
  if (shapes) {
    if (!g_shapes) g_shapes = new std::map<Shape, Total>;
    (*g_shapes)[Shape{ta, tb, M, N, K, beta != 0.0f}].add(s, flop);
  }
  return status;
}

__attribute__((destructor)) static void report() {
  if (g_total.calls > 0)
    std::fprintf(stderr, "sgemm_time_shim: %.3f s in %lld calls, %.2f GFLOP, %.1f GFLOP/s\n", g_total.seconds,
                 static_cast<long long>(g_total.calls), g_total.flop / 1e9, g_total.flop / g_total.seconds / 1e9);
  if (g_shapes)
    for (const auto& [k, t] : *g_shapes)
      std::fprintf(stderr, "  %c%c M %5lld N %5lld K %5lld %s %7lld calls %8.3f s %6.1f GFLOP/s\n", std::get<0>(k),
                   std::get<1>(k), static_cast<long long>(std::get<2>(k)), static_cast<long long>(std::get<3>(k)),
                   static_cast<long long>(std::get<4>(k)),
                   std::get<5>(k) ? "C+=" : "C= ", static_cast<long long>(t.calls), t.seconds,
                   t.flop / t.seconds / 1e9);
}
