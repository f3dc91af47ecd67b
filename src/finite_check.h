// Whether a tensor's values are all finite (no NaN, no infinity), in one read pass over its memory:
// the training step's check of every gradient (LibTorch's isfinite(g).all() runs several passes and
// allocates a temporary per tensor: 45 ms of a 420 ms gpt2-small-cpu step at 1 thread, against ~1 ms).
#pragma once
#include <torch/torch.h>

namespace bs {

// float32 and float64 CPU tensors by their bit patterns (an all-ones exponent is an infinity or a
// NaN), across LibTorch's threads; other dtypes and devices through isfinite(t).all(). True for an
// undefined or empty tensor.
bool all_finite(const torch::Tensor& t);

}  // namespace bs
