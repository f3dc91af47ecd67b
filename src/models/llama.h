// LLaMA (Touvron et al. 2023): RMSNorm, rotary position embedding, grouped-query attention (n_kv_heads)
// and a SwiGLU MLP, with Hugging Face names. RMSNorm, the linear layers, SwiGLU and attention run
// through curvature_ops.h (cheap double backward).
#pragma once
#include <torch/torch.h>

#include "model_config.h"

namespace bs {

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

struct LlamaAttentionImpl : torch::nn::Module {
  explicit LlamaAttentionImpl(const ModelConfig& c);
  // residual + attention(x): the residual joins o_proj's product (ops::linear_residual).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_heads, n_kv_heads, head_dim;
};
TORCH_MODULE(LlamaAttention);

struct LlamaMlpImpl : torch::nn::Module {
  explicit LlamaMlpImpl(const ModelConfig& c);
  // residual + mlp(x), the residual joining down_proj's product.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

struct LlamaLayerImpl : torch::nn::Module {
  explicit LlamaLayerImpl(const ModelConfig& c);
  torch::Tensor forward(torch::Tensor x);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
};
TORCH_MODULE(LlamaLayer);

struct LlamaImpl : torch::nn::Module {
  explicit LlamaImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& tokens);  // [B,T] int64 -> logits [B,T,V]
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
  torch::nn::Linear lm_head{nullptr};  // absent when tied
  ModelConfig cfg;
};
TORCH_MODULE(Llama);

// Hugging Face rotary embedding (rotate_half convention, theta 10000) on [B,H,T,hd].
torch::Tensor apply_rope(const torch::Tensor& x);

}  // namespace bs
