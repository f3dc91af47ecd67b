// The CPU driver of the update functors: contiguous raw pointers split across LibTorch's intra-op
// threads, a plain inner loop the compiler vectorizes.
#pragma once
#include <ATen/Parallel.h>

#include <cstdint>

namespace bs {

constexpr int64_t kGrain = 1 << 15;

// f(i) for i in [0, n), in parallel chunks.
template <class F>
void parallel_elements(int64_t n, const F& f) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) f(i);
  });
}

// sum of x[k]^2 in the tensor's own dtype (as the official torch.mean(g*g)) with eight independent
// partial sums: the chain of dependent adds, not the memory, would otherwise bound Adam-mini's block
// reductions. Deterministic for a given n.
template <class T>
T sum_squares(const T* x, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[k + j] * x[k + j];
  T tail = 0;
  for (; k < n; ++k) tail += x[k] * x[k];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

}  // namespace bs
