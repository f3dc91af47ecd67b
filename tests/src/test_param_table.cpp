// ParamTable. Oracle: the published name rules (ALGORITHMS.md 1.2 / 2.4) and offset arithmetic.
#include <gtest/gtest.h>

#include "errors.h"
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
