// Model ops whose double backward is cheap. A Hessian-vector product on a fixed batch runs backward
// through the gradient graph once per product; for a pointwise activation or a softmax, LibTorch's
// own double backward re-derives the second derivative from the saved inputs every time (GELU's costs
// ten elementwise passes) and adds up attention's cotangents in separate passes. These ops compute
// the derivatives' coefficients once, when the gradient graph is built (create_graph=true), and
// accumulate inside the matrix products, so each product costs a few passes (measured in
// `blocksharp bench hvp`: 2.36 -> 1.8 gradients per product on gpt2-small-cpu with LibTorch's matrix
// products, 1.67 with src/gemm.h's oneDNN ones).
// Values and gradients are LibTorch's; third and higher derivatives stay exact (they recompute the
// same formulas in LibTorch's ops from the saved inputs; checked against finite differences).
// NativeSecondOrder switches back to LibTorch's ops: the tests' oracle for values and products.
#pragma once
#include <torch/torch.h>

namespace bs::ops {

// SwiGLU (LLaMA's MLP): silu(g) u, g and u of one shape.
torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u);
// x W^T + b (b undefined: no bias).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b);
// res + (x W^T + b), a residual stream and a linear layer (b undefined: no bias): while a training step
// records it, the product accumulates into res + b instead of an addition after it (a rounding apart).
torch::Tensor linear_residual(const torch::Tensor& res, const torch::Tensor& x, const torch::Tensor& W,
                              const torch::Tensor& b);
// x W_i^T + b_i for each weight (bs empty: no biases), as one product against the stacked weights
// while a training step records them (GPT-2's q, k, v); the layers' own products otherwise.
std::vector<torch::Tensor> linears(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                                   const std::vector<torch::Tensor>& bs);
// GPT-2's MLP in one node: gelu(x W1^T + b1) W2^T + b2, GELU's tanh approximation
// 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3))).
torch::Tensor gelu_mlp(const torch::Tensor& x, const torch::Tensor& W1, const torch::Tensor& b1,
                       const torch::Tensor& W2, const torch::Tensor& b2);
// res + gelu_mlp(x, ...), the residual added as linear_residual adds it.
torch::Tensor gelu_mlp_residual(const torch::Tensor& res, const torch::Tensor& x, const torch::Tensor& W1,
                                const torch::Tensor& b1, const torch::Tensor& W2, const torch::Tensor& b2);
// LayerNorm over the last dimension with weight w and bias b.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, double eps);
// RMSNorm over the last dimension (LLaMA): x rsqrt(mean(x^2) + eps) w.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);
// Rotary position embedding on [..., T, 2h] (Hugging Face's rotate_half form): the pair (x_j, x_{j+h})
// at position t rotated by the angle whose cosine and sine are cos[t, j], sin[t, j] ([T, h] tables).
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
// Causal softmax attention: softmax(q k^T / sqrt(d), future keys masked) v with q [B, H, T, d] and
// k, v [B, G, T, d]; G < H is grouped-query attention (query head h uses key/value head h / (H / G)).
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// While one lives (per thread), the ops above are LibTorch's native ones.
class NativeSecondOrder {
 public:
  NativeSecondOrder();
  ~NativeSecondOrder();
  NativeSecondOrder(const NativeSecondOrder&) = delete;
  NativeSecondOrder& operator=(const NativeSecondOrder&) = delete;

 private:
  bool m_previous;
};

}  // namespace bs::ops
