// Blockwise learning rates. Oracles: the paper's multiplier table, the inverse-sharpness formula
// evaluated by hand on synthetic traces, and the grouping rules of the paper's code (biases join their
// module's group).
#include <gtest/gtest.h>

#include <cmath>

#include "blockwise_lr.h"
#include "errors.h"

using namespace bs;

namespace {
ParamTable table() {
  return ParamTable({{"wte.weight", torch::zeros({10, 4})},
                     {"h.0.attn.q_proj.weight", torch::zeros({4, 4})},
                     {"h.0.attn.q_proj.bias", torch::zeros({4})},
                     {"h.0.attn.v_proj.weight", torch::zeros({4, 4})},
                     {"h.0.mlp.fc_in.weight", torch::zeros({8, 4})},
                     {"h.0.ln_1.weight", torch::zeros({4})},
                     {"h.0.ln_1.bias", torch::zeros({4})}});
}
double multiplier(const json& j, const std::string& group) {
  for (const auto& g : j["groups"])
    if (g["group"] == group) return g["multiplier"].get<double>();
  return NAN;
}
}  // namespace

TEST(BlockwiseLr, GroupsFollowThePapersCode) {
  EXPECT_EQ(lr_group("h.0.attn.q_proj.bias", {}), BlockKind::QK);
  EXPECT_EQ(lr_group("h.0.ln_1.bias", {}), BlockKind::Norm);
  EXPECT_EQ(lr_group("h.0.mlp.fc_in.bias", {}), BlockKind::FFN);
  EXPECT_EQ(lr_group("lm_head.weight", {}), BlockKind::Head);
  auto pats = parse_group_patterns({"QK=c_attn"});
  EXPECT_EQ(lr_group("h.0.attn.c_attn.weight", pats), BlockKind::QK);
  EXPECT_THROW(parse_group_patterns({"Attn=x"}), UserError);
  EXPECT_THROW(parse_group_patterns({"QK"}), UserError);
}

TEST(BlockwiseLr, PaperTableAndMeasuredSharpness) {
  auto t = table();
  std::vector<double> tr = {1.0, 2.0, 1.0, 4.0, 8.0, 3.0, 1.0};
  json j = blockwise_lr_config(t, ModelInfo{}, tr, LrPolicy{}, {});
  EXPECT_EQ(multiplier(j, "Emb"), 10);
  EXPECT_EQ(multiplier(j, "QK"), 8);
  EXPECT_EQ(multiplier(j, "VO"), 4);
  EXPECT_EQ(multiplier(j, "FFN"), 6);
  EXPECT_EQ(multiplier(j, "Norm"), 1);
  for (const auto& g : j["groups"]) {
    if (g["group"] == "QK") {
      EXPECT_DOUBLE_EQ(g["avg_sharpness"].get<double>(), 2.0 / 16.0);  // the bias stays out of the average
      EXPECT_DOUBLE_EQ(g["avg_sharpness_with_biases"].get<double>(), 3.0 / 20.0);
    }
  }
}

TEST(BlockwiseLr, InverseSharpnessFormula) {
  auto t = table();
  // Average sharpness of the non-bias tensors: Emb 1/40, QK 2/16, VO 4/16, FFN 8/32, Norm 3/4 (the sharpest).
  std::vector<double> tr = {1.0, 2.0, 0.5, 4.0, 8.0, 3.0, 1.0};
  LrPolicy p;
  p.kind = LrPolicyKind::InverseSharpness;
  json j = blockwise_lr_config(t, ModelInfo{}, tr, p, {});  // default exponent 1, clamp [1, 10]
  EXPECT_DOUBLE_EQ(multiplier(j, "Norm"), 1.0);
  EXPECT_DOUBLE_EQ(multiplier(j, "VO"), 0.75 / 0.25);
  EXPECT_DOUBLE_EQ(multiplier(j, "QK"), 0.75 / 0.125);
  EXPECT_DOUBLE_EQ(multiplier(j, "Emb"), 10.0);  // 30, clamped
  p.exponent = 0.5;
  j = blockwise_lr_config(t, ModelInfo{}, tr, p, {});
  EXPECT_DOUBLE_EQ(multiplier(j, "QK"), std::sqrt(0.75 / 0.125));
  EXPECT_DOUBLE_EQ(multiplier(j, "Emb"), std::sqrt(0.75 / 0.025));
  p.max_multiplier = 3;
  j = blockwise_lr_config(t, ModelInfo{}, tr, p, {});
  EXPECT_DOUBLE_EQ(multiplier(j, "Emb"), 3.0);
  // Round trip through the loader: every parameter gets its group's multiplier.
  auto lr = blockwise_lr_from_json(j, t, "bw.json");
  EXPECT_DOUBLE_EQ(lr.multiplier[2], multiplier(j, "QK"));
  EXPECT_DOUBLE_EQ(lr.warmup_stretch[0], 3.0);
}

// A group whose sharpness is negative (Emb) or within one standard error of 0 (QK: 2/16 = 0.125 against
// 2.5/16) has nothing to invert: it keeps the paper's multiplier and is named; the others follow the
// formula against the sharpest resolved group (Norm 3/4). With one group resolved, the paper's table.
TEST(BlockwiseLr, InverseSharpnessKeepsThePaperMultiplierWhereSharpnessIsNotResolved) {
  auto t = table();
  const std::vector<double> tr = {-1.0, 2.0, 0.5, 4.0, 8.0, 3.0, 1.0};
  const std::vector<double> se = {0.1, 2.5, 0.0, 0.1, 0.1, 0.1, 0.0};
  LrPolicy p;
  p.kind = LrPolicyKind::InverseSharpness;
  json j = blockwise_lr_config(t, ModelInfo{}, tr, p, {}, se);
  EXPECT_DOUBLE_EQ(multiplier(j, "Emb"), 10.0);
  EXPECT_DOUBLE_EQ(multiplier(j, "QK"), 8.0);
  EXPECT_DOUBLE_EQ(multiplier(j, "Norm"), 1.0);
  EXPECT_DOUBLE_EQ(multiplier(j, "VO"), 0.75 / 0.25);
  EXPECT_DOUBLE_EQ(multiplier(j, "FFN"), 0.75 / 0.25);
  EXPECT_EQ(j["policy"]["unresolved_groups"], json({"Emb", "QK"}));
  EXPECT_EQ(j["policy"]["derived_groups"], json({"VO", "FFN", "Norm"}));
  for (const auto& g : j["groups"]) {
    const bool expect_resolved = g["group"] != "Emb" && g["group"] != "QK";
    EXPECT_EQ(g["sharpness_resolved"].get<bool>(), expect_resolved) << g["group"];
  }
  for (const auto& g : j["groups"]) {
    if (g["group"] == "QK") {
      EXPECT_DOUBLE_EQ(g["avg_sharpness_stderr"].get<double>(), 2.5 / 16);
    }
  }
  // One resolved group (FFN) has no other to be compared with: the paper's table throughout.
  const std::vector<double> one_resolved = {-1.0, -2.0, 0.5, -4.0, 8.0, -3.0, 1.0};
  j = blockwise_lr_config(t, ModelInfo{}, one_resolved, p, {}, se);
  for (const char* g : {"Emb", "QK", "VO", "FFN", "Norm"})
    EXPECT_DOUBLE_EQ(multiplier(j, g), paper_multiplier(block_kind_from_string(g))) << g;
  EXPECT_TRUE(j["policy"]["derived_groups"].empty());
}
