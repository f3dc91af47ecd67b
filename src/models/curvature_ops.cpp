// The switch between the curvature ops and LibTorch's native ones (NativeSecondOrder). The ops live
// in ops_swiglu.cpp (SwiGLU), ops_linear.cpp (Linear, GPT-2's GELU MLP), ops_norm.cpp and
// ops_attention.cpp (causal attention).
#include "curvature_ops.h"

#include "curvature_ops_detail.h"

#include <ATen/BatchedTensorImpl.h>

#include <algorithm>

namespace bs::ops {

namespace {
thread_local bool g_native = false;
}  // namespace

bool detail::recorded(const torch::Tensor& x) {
  return !g_native && torch::GradMode::is_enabled() && x.requires_grad();
}

bool detail::off_rows(const torch::Tensor& t) {
  return t.defined() && (at::isBatchedTensor(t) || !t.device().is_cpu());
}

bool detail::generic(std::initializer_list<torch::Tensor> tensors) {
  return torch::GradMode::is_enabled() || std::any_of(tensors.begin(), tensors.end(), off_rows);
}

bool detail::float_rows(std::initializer_list<torch::Tensor> tensors) {
  return !generic(tensors) && std::all_of(tensors.begin(), tensors.end(),
                                          [](const torch::Tensor& t) { return t.scalar_type() == torch::kFloat32; });
}

NativeSecondOrder::NativeSecondOrder() : m_previous(g_native) { g_native = true; }
NativeSecondOrder::~NativeSecondOrder() { g_native = m_previous; }

}  // namespace bs::ops
