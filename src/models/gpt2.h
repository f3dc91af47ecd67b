// GPT-2 (Radford et al. 2019) with Hugging Face-style names and separate q/k/v/o projections, written
// with plain attention math so that double backward (Hessian-vector products) works everywhere; its
// LayerNorms, linear layers, MLP and attention run through curvature_ops.h (cheap double backward).
#pragma once
#include <torch/torch.h>

#include "model_config.h"

namespace bs {

struct CausalSelfAttentionImpl : torch::nn::Module {
  explicit CausalSelfAttentionImpl(const ModelConfig& c);
  // residual + attention(x): the residual joins o_proj's product (ops::linear_residual).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_heads;
};
TORCH_MODULE(CausalSelfAttention);

struct Gpt2MlpImpl : torch::nn::Module {
  explicit Gpt2MlpImpl(const ModelConfig& c);
  // residual + mlp(x), the residual joining fc_out's product.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear fc_in{nullptr}, fc_out{nullptr};
};
TORCH_MODULE(Gpt2Mlp);

struct Gpt2BlockImpl : torch::nn::Module {
  explicit Gpt2BlockImpl(const ModelConfig& c);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  Gpt2Mlp mlp{nullptr};
};
TORCH_MODULE(Gpt2Block);

struct Gpt2Impl : torch::nn::Module {
  explicit Gpt2Impl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& tokens);  // [B,T] int64 -> logits [B,T,V]
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h;
  torch::nn::LayerNorm ln_f{nullptr};
  torch::nn::Linear lm_head{nullptr};  // absent when tied to wte
  ModelConfig cfg;
};
TORCH_MODULE(Gpt2);

}  // namespace bs
