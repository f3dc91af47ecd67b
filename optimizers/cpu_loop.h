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

}  // namespace bs
