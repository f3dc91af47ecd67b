// The training step's checks of its gradients: whether a tensor's values are all finite (no NaN, no
// infinity), in one read pass over its memory (LibTorch's isfinite(g).all() runs several passes and
// allocates a temporary per tensor: 45 ms of a 420 ms gpt2-small-cpu step at 1 thread, against ~1 ms);
// and, in one pass over all of them, which is the first non-finite one and their global L2 norm, with
// clipping to a maximum norm as torch.nn.utils.clip_grad_norm_ does it from there (LibTorch's takes a
// norm per tensor, a norm of those, then a multiplication per tensor: 266 + 132 calls for
// gpt2-small-cpu, two passes over the gradients).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace bs {

// float32 and float64 CPU tensors by their bit patterns (an all-ones exponent is an infinity or a
// NaN), across LibTorch's threads; other dtypes and devices through isfinite(t).all(). True for an
// undefined or empty tensor.
bool all_finite(const torch::Tensor& t);

// What one pass over a list of gradients found. `norm` is sqrt(sum of every value squared), summed in
// float64 in an order fixed by the tensors' sizes alone (the same bits at every thread count and in
// both loop variants); infinity or NaN where a value is not finite.
struct GradientScan {
  int64_t first_nonfinite = -1;  // index of the first tensor with a NaN or infinity; -1: none
  double norm = 0;
};
// Undefined and empty tensors count as finite with nothing to add. float32 and float64 CPU tensors in
// one parallel pass; others through LibTorch (isfinite, norm).
GradientScan scan_gradients(const std::vector<torch::Tensor>& grads);

// clip_grad_norm_'s coefficient for a total norm: max_norm / (norm + 1e-6), at most 1 (NaN where the
// norm is NaN), in LibTorch's arithmetic there: float32 where every defined gradient is float32 (its
// norm is then a float32 tensor), else float64.
double clip_coefficient(const std::vector<torch::Tensor>& grads, double norm, double max_norm);

// Every defined gradient times `coefficient`, in place, in one parallel pass (float32 and float64 CPU
// tensors; others through mul_). Nothing is done where it is 1: that multiplication changes no bit.
void scale_gradients(const std::vector<torch::Tensor>& grads, double coefficient);

}  // namespace bs
