// LLaMA modules. GQA: query head h uses KV head h / (n_heads / n_kv_heads), the order of HF repeat_kv.
#include "llama.h"

#include "curvature_ops.h"
#include "gpt2.h"

namespace bs {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return ops::rms_norm(x, weight, eps); }

torch::Tensor apply_rope(const torch::Tensor& x) {
  const int64_t T = x.size(2), hd = x.size(3);
  auto opts = torch::TensorOptions().dtype(x.scalar_type()).device(x.device());
  auto inv_freq = torch::pow(10000.0, -torch::arange(0, hd, 2, opts) / static_cast<double>(hd));
  auto freqs = torch::outer(torch::arange(T, opts), inv_freq);  // [T, hd/2]
  return ops::rope(x, freqs.cos(), freqs.sin());
}

// The layers through curvature_ops (cheap double backward): bias-free linear layers.
static torch::Tensor through_ops(const torch::nn::Linear& l, const torch::Tensor& x) {
  return ops::linear(x, l->weight, {});
}

static torch::nn::Linear make_linear(torch::nn::Module& m, const char* name, int64_t in, int64_t out, double std) {
  auto l = m.register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
  torch::NoGradGuard g;
  l->weight.normal_(0.0, std);
  return l;
}

LlamaAttentionImpl::LlamaAttentionImpl(const ModelConfig& c)
    : n_heads(c.n_heads), n_kv_heads(c.kv_heads()), head_dim(c.head_dim()) {
  const double resid = 0.02 / std::sqrt(2.0 * c.n_layer);
  q_proj = make_linear(*this, "q_proj", c.dim, n_heads * head_dim, 0.02);
  k_proj = make_linear(*this, "k_proj", c.dim, n_kv_heads * head_dim, 0.02);
  v_proj = make_linear(*this, "v_proj", c.dim, n_kv_heads * head_dim, 0.02);
  o_proj = make_linear(*this, "o_proj", n_heads * head_dim, c.dim, resid);
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  const int64_t B = x.size(0), T = x.size(1);
  auto heads = [&](const torch::Tensor& t, int64_t h) { return t.view({B, T, h, head_dim}).transpose(1, 2); };
  auto q = apply_rope(heads(through_ops(q_proj, x), n_heads));
  auto k = apply_rope(heads(through_ops(k_proj, x), n_kv_heads));
  auto v = heads(through_ops(v_proj, x), n_kv_heads);
  auto y = ops::causal_attention(q, k, v);  // grouped-query: each KV head serves n_heads / n_kv_heads queries
  return ops::linear_residual(residual, y.transpose(1, 2).reshape({B, T, n_heads * head_dim}), o_proj->weight, {});
}

LlamaMlpImpl::LlamaMlpImpl(const ModelConfig& c) {
  const int64_t hidden = c.ffn_hidden();
  gate_proj = make_linear(*this, "gate_proj", c.dim, hidden, 0.02);
  up_proj = make_linear(*this, "up_proj", c.dim, hidden, 0.02);
  down_proj = make_linear(*this, "down_proj", hidden, c.dim, 0.02 / std::sqrt(2.0 * c.n_layer));
}

torch::Tensor LlamaMlpImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return ops::linear_residual(residual, ops::swiglu(through_ops(gate_proj, x), through_ops(up_proj, x)),
                              down_proj->weight, {});
}

LlamaLayerImpl::LlamaLayerImpl(const ModelConfig& c) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.dim, 1e-6));
  self_attn = register_module("self_attn", LlamaAttention(c));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.dim, 1e-6));
  mlp = register_module("mlp", LlamaMlp(c));
}

torch::Tensor LlamaLayerImpl::forward(torch::Tensor x) {
  x = self_attn(input_layernorm(x), x);
  return mlp(post_attention_layernorm(x), x);
}

LlamaImpl::LlamaImpl(const ModelConfig& c) : cfg(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab, c.dim));
  {
    torch::NoGradGuard g;
    embed_tokens->weight.normal_(0.0, 0.02);
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) layers->push_back(LlamaLayer(c));
  norm = register_module("norm", RMSNorm(c.dim, 1e-6));
  if (!c.tied) lm_head = make_linear(*this, "lm_head", c.dim, c.vocab, 0.02);
}

torch::Tensor LlamaImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "llama expects token inputs of shape [B,T], got ", tokens.sizes());
  auto x = embed_tokens(tokens);
  for (const auto& layer : *layers) x = layer->as<LlamaLayer>()->forward(x);
  x = norm(x);
  return cfg.tied ? ops::linear(x, embed_tokens->weight, {}) : through_ops(lm_head, x);
}

}  // namespace bs
