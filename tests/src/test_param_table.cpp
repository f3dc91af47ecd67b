// ParamTable. Oracle: the published name rules (ALGORITHMS.md 1.2 / 2.4) and offset arithmetic.
#include <gtest/gtest.h>

#include "errors.h"
#include "network.h"
#include "param_table.h"

using namespace bs;

TEST(ParamTable, KindsFollowNameRules) {
  EXPECT_EQ(infer_block_kind("wte.weight"), BlockKind::Emb);
  EXPECT_EQ(infer_block_kind("wpe.weight"), BlockKind::Emb);
  EXPECT_EQ(infer_block_kind("embed_tokens.weight"), BlockKind::Emb);
  EXPECT_EQ(infer_block_kind("h.0.attn.q_proj.weight"), BlockKind::QK);
  EXPECT_EQ(infer_block_kind("layers.1.self_attn.k_proj.weight"), BlockKind::QK);
  EXPECT_EQ(infer_block_kind("h.0.attn.v_proj.weight"), BlockKind::VO);
  EXPECT_EQ(infer_block_kind("layers.0.self_attn.o_proj.weight"), BlockKind::VO);
  EXPECT_EQ(infer_block_kind("h.3.mlp.fc_in.weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("layers.0.mlp.gate_proj.weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("h.0.ln_1.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("layers.0.input_layernorm.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("norm.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("lm_head.weight"), BlockKind::Head);
  EXPECT_EQ(infer_block_kind("h.0.attn.q_proj.bias"), BlockKind::Bias);
  EXPECT_EQ(infer_block_kind("conv1.weight"), BlockKind::Other);
}

// The families users bring, with each family's own names (Hugging Face's modeling files, torch.nn).
TEST(ParamTable, KindsOfHuggingFaceGpt2) {
  EXPECT_EQ(infer_block_kind("transformer.wte.weight"), BlockKind::Emb);
  EXPECT_EQ(infer_block_kind("transformer.wpe.weight"), BlockKind::Emb);
  EXPECT_EQ(infer_block_kind("transformer.h.0.attn.c_attn.weight"), BlockKind::QK);
  EXPECT_EQ(infer_block_kind("transformer.h.0.attn.c_attn.bias"), BlockKind::Bias);
  EXPECT_EQ(infer_block_kind("transformer.h.0.attn.c_proj.weight"), BlockKind::VO);
  // Context before the bare suffix: the MLP's c_proj is FFN, not an attention output.
  EXPECT_EQ(infer_block_kind("transformer.h.0.mlp.c_proj.weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("transformer.h.0.mlp.c_fc.weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("transformer.h.0.ln_1.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("transformer.ln_f.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("lm_head.weight"), BlockKind::Head);
}

TEST(ParamTable, KindsOfLlamaMistralQwen2) {
  EXPECT_EQ(infer_block_kind("model.embed_tokens.weight"), BlockKind::Emb);
  for (const char* p : {"q_proj", "k_proj"}) {
    EXPECT_EQ(infer_block_kind(std::string("model.layers.3.self_attn.") + p + ".weight"), BlockKind::QK);
    EXPECT_EQ(infer_block_kind(std::string("model.layers.3.self_attn.") + p + ".bias"), BlockKind::Bias);  // Qwen2
  }
  for (const char* p : {"v_proj", "o_proj"})
    EXPECT_EQ(infer_block_kind(std::string("model.layers.3.self_attn.") + p + ".weight"), BlockKind::VO);
  for (const char* p : {"gate_proj", "up_proj", "down_proj"})
    EXPECT_EQ(infer_block_kind(std::string("model.layers.0.mlp.") + p + ".weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("model.layers.0.input_layernorm.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("model.layers.0.post_attention_layernorm.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("model.norm.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("lm_head.weight"), BlockKind::Head);
}

TEST(ParamTable, KindsOfMultiheadAttentionAndVit) {
  EXPECT_EQ(infer_block_kind("encoder.layers.0.self_attn.in_proj_weight"), BlockKind::QK);
  EXPECT_EQ(infer_block_kind("encoder.layers.0.self_attn.in_proj_bias"), BlockKind::Bias);
  EXPECT_EQ(infer_block_kind("encoder.layers.0.self_attn.out_proj.weight"), BlockKind::VO);
  EXPECT_EQ(infer_block_kind("encoder.layers.0.linear1.weight"), BlockKind::FFN);  // nn.TransformerEncoderLayer
  EXPECT_EQ(infer_block_kind("patch_embed.proj.weight"), BlockKind::Emb);          // timm
  EXPECT_EQ(infer_block_kind("vit.embeddings.patch_embeddings.projection.weight"), BlockKind::Emb);  // HF
  EXPECT_EQ(infer_block_kind("vit.encoder.layer.0.attention.attention.query.weight"), BlockKind::QK);
  EXPECT_EQ(infer_block_kind("vit.encoder.layer.0.attention.attention.value.weight"), BlockKind::VO);
  EXPECT_EQ(infer_block_kind("vit.encoder.layer.0.attention.output.dense.weight"), BlockKind::VO);
  EXPECT_EQ(infer_block_kind("vit.encoder.layer.0.intermediate.dense.weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("vit.encoder.layer.0.output.dense.weight"), BlockKind::FFN);
  EXPECT_EQ(infer_block_kind("vit.encoder.layer.0.layernorm_before.weight"), BlockKind::Norm);
  EXPECT_EQ(infer_block_kind("blocks.0.attn.qkv.weight"), BlockKind::QK);  // timm fused
  EXPECT_EQ(infer_block_kind("classifier.weight"), BlockKind::Head);
}

// Every rule is reachable: its first pattern, alone, is decided by that rule (no earlier rule shadows it).
TEST(ParamTable, EveryKindRuleIsReachable) {
  for (const auto& rule : kind_rules())
    for (const auto& p : rule.patterns) EXPECT_EQ(infer_block_kind("x." + p + ".weight"), rule.kind) << p;
}

// PyTorch's named_parameters(): a tensor registered twice (tied weights) is listed once under its first
// name; tensors with requires_grad false are left out. Both are reported.
TEST(ParamTable, SharedTensorsOnceFrozenOut) {
  auto wte = torch::randn({5, 3}).requires_grad_(true);
  auto frozen = torch::randn({3});
  auto ln = torch::randn({3}).requires_grad_(true);
  const NamedTensors all = {{"wte.weight", wte}, {"ln.bias", frozen}, {"ln.weight", ln}, {"lm_head.weight", wte}};
  const auto ix = index_parameters(all);
  ASSERT_EQ(ix.kept.size(), 2u);
  EXPECT_EQ(ix.kept[0].first, "wte.weight");
  EXPECT_EQ(ix.kept[1].first, "ln.weight");
  ASSERT_EQ(ix.aliases.size(), 1u);
  EXPECT_EQ(ix.aliases[0], std::make_pair(std::string("lm_head.weight"), std::string("wte.weight")));
  EXPECT_EQ(ix.frozen, std::vector<std::string>{"ln.bias"});
  // A copy with equal values is a different tensor, as in PyTorch.
  const auto copy = index_parameters({{"a", wte}, {"b", wte.detach().clone().requires_grad_(true)}});
  EXPECT_EQ(copy.kept.size(), 2u);
}

TEST(ParamTable, OffsetsAndFlattenRoundTrip) {
  std::vector<std::pair<std::string, torch::Tensor>> params = {
      {"a.weight", torch::randn({3, 4})}, {"b.bias", torch::randn({5})}, {"c.weight", torch::randn({2, 2, 2})}};
  ParamTable table(params);
  ASSERT_EQ(table.size(), 3u);
  EXPECT_EQ(table.at(0).offset, 0);
  EXPECT_EQ(table.at(1).offset, 12);
  EXPECT_EQ(table.at(2).offset, 17);
  EXPECT_EQ(table.total_numel(), 25);
  std::vector<torch::Tensor> parts;
  for (auto& [n, t] : params) parts.push_back(t);
  auto flat = table.flatten(parts);
  auto back = table.unflatten(flat);
  for (size_t i = 0; i < parts.size(); ++i) EXPECT_TRUE(torch::equal(back[i], parts[i]));
  EXPECT_EQ(table.index_of("b.bias"), 1u);
  EXPECT_THROW(table.index_of("nope"), UserError);
}

TEST(ParamTable, KindNamesRoundTrip) {
  for (BlockKind k : all_block_kinds()) EXPECT_EQ(block_kind_from_string(to_string(k)), k);
  EXPECT_THROW(block_kind_from_string("Attn"), UserError);
}
