// Is a batched strided product faster than attention's per-head sgemm loop? Times the six products of
// an attention layer's forward and backward at gpt2-small-cpu / llama-small-cpu shapes (batch 8 x 8
// heads = 64 slices of 128 x 32) two ways in interleaved rounds (medians): gemm::bmm (one oneDNN sgemm
// per head, the heads shared across the threads) and oneDNN's matmul primitive over the whole batch
// (3-d strided memory descriptors, the primitive created once). Not part of the build: it needs
// oneDNN's headers (Debian libdnnl-dev, the same 2.6.3 LibTorch loads). From the repository root,
// after scripts/build.sh:
//   g++ -O2 -std=c++17 -fopenmp tools/experiments/batched_attention_products.cpp -o /tmp/bap -Isrc \
//     -I/usr/include/torch/csrc/api/include build/lib/libblocksharp_core.a -ltorch -ltorch_cpu -lc10 \
//     -lglog -lpthread -ldnnl && /tmp/bap 1 && /tmp/bap 2
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "gemm.h"

namespace {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::memory::desc desc3(const torch::Tensor& t) {
  return dnnl::memory::desc({t.size(0), t.size(1), t.size(2)}, dnnl::memory::data_type::f32,
                            {t.stride(0), t.stride(1), t.stride(2)});
}

// One primitive per product (a framework would cache them by shape and strides).
struct Batched {
  std::unique_ptr<dnnl::matmul> prim;
  torch::Tensor operator()(const torch::Tensor& a, const torch::Tensor& b) {
    auto c = torch::empty({a.size(0), a.size(1), b.size(2)}, a.options());
    const auto ma = desc3(a), mb = desc3(b), mc = desc3(c);
    if (!prim)
      prim = std::make_unique<dnnl::matmul>(dnnl::matmul::primitive_desc(dnnl::matmul::desc(ma, mb, mc), engine()));
    dnnl::stream s(engine());
    dnnl::memory A(ma, engine(), a.data_ptr()), B(mb, engine(), b.data_ptr()), C(mc, engine(), c.data_ptr());
    prim->execute(s, {{DNNL_ARG_SRC, A}, {DNNL_ARG_WEIGHTS, B}, {DNNL_ARG_DST, C}});
    s.wait();
    return c;
  }
};

double seconds() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // as tools/main.cpp: freed blocks are reused, not page-faulted anew
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  at::set_num_threads(threads);
  const int64_t slices = 64, T = 128, D = 32;
  const auto q = torch::randn({slices, T, D}), k = torch::randn({slices, T, D}), v = torch::randn({slices, T, D});
  const auto P = torch::randn({slices, T, T}), gO = torch::randn({slices, T, D});
  struct Case {
    const char* name;
    torch::Tensor a, b;
  };
  const std::vector<Case> cases = {{"q k^T", q, k.transpose(1, 2)},   {"P v", P, v},
                                   {"gO v^T", gO, v.transpose(1, 2)}, {"dS k", P, k},
                                   {"dS^T q", P.transpose(1, 2), q},  {"P^T gO", P.transpose(1, 2), gO}};
  std::vector<Batched> batched(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto x = bs::gemm::bmm(cases[i].a, cases[i].b), y = batched[i](cases[i].a, cases[i].b);
    std::printf("%-7s largest |per-head - batched| %g\n", cases[i].name, (x - y).abs().max().item<float>());
  }
  const int rounds = 30, reps = 20;
  std::vector<std::vector<double>> loop(cases.size()), whole(cases.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < cases.size(); ++i) {
      const double t0 = seconds();
      for (int j = 0; j < reps; ++j) bs::gemm::bmm(cases[i].a, cases[i].b);
      const double t1 = seconds();
      for (int j = 0; j < reps; ++j) batched[i](cases[i].a, cases[i].b);
      const double t2 = seconds();
      loop[i].push_back((t1 - t0) / reps * 1e3);
      whole[i].push_back((t2 - t1) / reps * 1e3);
    }
  double sum_loop = 0, sum_whole = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const double a = median(loop[i]), b = median(whole[i]);
    sum_loop += a;
    sum_whole += b;
    std::printf("%-7s per-head %.3f ms  batched %.3f ms  batched/per-head %.2f\n", cases[i].name, a, b, b / a);
  }
  std::printf("layer   per-head %.3f ms  batched %.3f ms  batched/per-head %.2f  (%d threads)\n", sum_loop, sum_whole,
              sum_whole / sum_loop, threads);
}
