// GPT-2 modules. Initialisation follows GPT-2: N(0, 0.02), residual projections scaled by
// 1/sqrt(2 n_layer), zero biases.
#include "gpt2.h"

#include <cmath>

#include "curvature_ops.h"

namespace bs {

static void init_linear(torch::nn::Linear& l, double std) {
  torch::NoGradGuard g;
  l->weight.normal_(0.0, std);
  if (l->bias.defined()) l->bias.zero_();
}

// The layers through curvature_ops (cheap double backward).
static torch::Tensor through_ops(const torch::nn::LayerNorm& ln, const torch::Tensor& x) {
  return ops::layer_norm(x, ln->weight, ln->bias, ln->options.eps());
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& c) : n_heads(c.n_heads) {
  auto lin = [&](const char* name) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(c.dim, c.dim).bias(true)));
  };
  q_proj = lin("q_proj");
  k_proj = lin("k_proj");
  v_proj = lin("v_proj");
  o_proj = lin("o_proj");
  for (auto* l : {&q_proj, &k_proj, &v_proj}) init_linear(*l, 0.02);
  init_linear(o_proj, 0.02 / std::sqrt(2.0 * c.n_layer));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = D / n_heads;
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, n_heads, hd}).transpose(1, 2); };
  const auto qkv = ops::linears(x, {q_proj->weight, k_proj->weight, v_proj->weight},
                                {q_proj->bias, k_proj->bias, v_proj->bias});  // one product
  auto y = ops::causal_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]));
  return ops::linear_residual(residual, y.transpose(1, 2).reshape({B, T, D}), o_proj->weight, o_proj->bias);
}

Gpt2MlpImpl::Gpt2MlpImpl(const ModelConfig& c) {
  const int64_t hidden = c.ffn_hidden();
  fc_in = register_module("fc_in", torch::nn::Linear(c.dim, hidden));
  fc_out = register_module("fc_out", torch::nn::Linear(hidden, c.dim));
  init_linear(fc_in, 0.02);
  init_linear(fc_out, 0.02 / std::sqrt(2.0 * c.n_layer));
}

torch::Tensor Gpt2MlpImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return ops::gelu_mlp_residual(residual, x, fc_in->weight, fc_in->bias, fc_out->weight, fc_out->bias);
}

Gpt2BlockImpl::Gpt2BlockImpl(const ModelConfig& c) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim})));
  attn = register_module("attn", CausalSelfAttention(c));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim})));
  mlp = register_module("mlp", Gpt2Mlp(c));
}

torch::Tensor Gpt2BlockImpl::forward(torch::Tensor x) {
  x = attn(through_ops(ln_1, x), x);
  return mlp(through_ops(ln_2, x), x);
}

Gpt2Impl::Gpt2Impl(const ModelConfig& c) : cfg(c) {
  wte = register_module("wte", torch::nn::Embedding(c.vocab, c.dim));
  wpe = register_module("wpe", torch::nn::Embedding(c.seq_len, c.dim));
  {
    torch::NoGradGuard g;
    wte->weight.normal_(0.0, 0.02);
    wpe->weight.normal_(0.0, 0.01);
  }
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(Gpt2Block(c));
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim})));
  if (!c.tied) {
    lm_head = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.dim, c.vocab).bias(false)));
    init_linear(lm_head, 0.02);
  }
}

torch::Tensor Gpt2Impl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "gpt2 expects token inputs of shape [B,T], got ", tokens.sizes());
  TORCH_CHECK(tokens.size(1) <= cfg.seq_len, "sequence length ", tokens.size(1), " exceeds the model's seq_len ",
              cfg.seq_len);
  auto pos = torch::arange(tokens.size(1), torch::TensorOptions().dtype(torch::kLong).device(tokens.device()));
  auto x = wte(tokens) + wpe(pos).unsqueeze(0);
  for (const auto& block : *h) x = block->as<Gpt2Block>()->forward(x);
  x = through_ops(ln_f, x);
  return ops::linear(x, cfg.tied ? wte->weight : lm_head->weight, {});
}

}  // namespace bs
