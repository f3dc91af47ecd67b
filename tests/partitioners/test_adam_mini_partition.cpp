// Adam-mini partition. Oracle: block counts derived by hand from the official v1.1.1 rules
// (ALGORITHMS.md 1.2) for gpt2 (tied, untied) and llama (GQA) presets; exact JSON round trip; and
// validation errors that name the key.
#include <gtest/gtest.h>

#include <fstream>

#include "adam_mini_partition.h"
#include "errors.h"
#include "models/model_zoo.h"

using namespace bs;

namespace {

struct Built {
  std::unique_ptr<Network> net;
  ParamTable table;
};

Built build(const std::string& preset, std::vector<std::string> sets) {
  Built b;
  b.net = build_network(preset, resolve_model_config(preset, sets, 0, 0), 0);
  b.table = ParamTable(b.net->named_parameters());
  return b;
}

const ParamBlock& find(const Partition& p, const std::string& name) {
  for (const auto& b : p.params)
    if (b.name == name) return b;
  throw std::runtime_error("missing " + name);
}

}  // namespace

TEST(AdamMiniRules, Gpt2TiedAndUntied) {
  // dim 64, 4 heads -> head_numel = 64*64/4 = 1024; vocab 256, seq_len 64.
  for (bool tied : {true, false}) {
    auto b = build("gpt2-tiny", {tied ? "tied=true" : "tied=false"});
    Partition p = adam_mini_rules(b.table, b.net->info());
    EXPECT_EQ(find(p, "h.0.attn.q_proj.weight").n_blocks, 4);
    EXPECT_EQ(find(p, "h.1.attn.k_proj.weight").n_blocks, 4);
    EXPECT_EQ(find(p, "h.0.attn.q_proj.weight").block_size, 1024);
    EXPECT_EQ(find(p, "h.0.attn.v_proj.weight").n_blocks, 64);  // per output neuron
    EXPECT_EQ(find(p, "h.0.attn.o_proj.weight").n_blocks, 64);
    EXPECT_EQ(find(p, "h.0.mlp.fc_in.weight").n_blocks, 256);
    EXPECT_EQ(find(p, "h.0.mlp.fc_out.weight").n_blocks, 64);
    EXPECT_EQ(find(p, "wte.weight").n_blocks, 256);  // per token
    EXPECT_EQ(find(p, "wpe.weight").n_blocks, 1);    // no rule matches "wpe": one v
    EXPECT_EQ(find(p, "h.0.ln_1.weight").n_blocks, 1);
    EXPECT_EQ(find(p, "h.0.attn.q_proj.bias").n_blocks, 64);  // biases: full Adam
    EXPECT_FALSE(find(p, "h.0.ln_1.weight").weight_decay);
    EXPECT_FALSE(find(p, "h.0.mlp.fc_in.bias").weight_decay);
    EXPECT_TRUE(find(p, "h.0.mlp.fc_in.weight").weight_decay);
    if (!tied) {
      EXPECT_EQ(find(p, "lm_head.weight").n_blocks, 256);
    }
    EXPECT_EQ(p.params.size(), b.table.size());
  }
}

// Measured mode reports the rules' granularity of the tensor it sampled (not of the kind's last tensor),
// and lists each tensor it switched: Emb holds wte (per row under the rules) and wpe (whole).
TEST(AdamMiniMeasured, ReportNamesTheSampledTensorAndEverySwitch) {
  auto b = build("gpt2-tiny", {"tied=true"});
  KindEvidence ev;
  ev.sampled_param = "wte.weight";
  ev.recommended = "whole";
  json report;
  Partition p = adam_mini_measured(b.table, b.net->info(), {{BlockKind::Emb, ev}}, report);
  const json& r = report.at("Emb");
  EXPECT_EQ(r.at("rules_granularity"), "per-row");
  EXPECT_EQ(r.at("used"), "whole");
  EXPECT_FALSE(r.at("agrees_with_rules").get<bool>());
  ASSERT_EQ(r.at("switched").size(), 1u);  // wpe was whole already
  EXPECT_EQ(r.at("switched")[0].at("name"), "wte.weight");
  EXPECT_EQ(r.at("switched")[0].at("from"), "per-row");
  EXPECT_EQ(find(p, "wte.weight").n_blocks, 1);
  // Sampling wpe (whole under the rules) and keeping whole changes nothing: agreement.
  ev.sampled_param = "wpe.weight";
  ev.recommended = "whole";
  b.table.set_kind(b.table.index_of("wte.weight"), BlockKind::Other);
  adam_mini_measured(b.table, b.net->info(), {{BlockKind::Emb, ev}}, report);
  EXPECT_EQ(report.at("Emb").at("rules_granularity"), "whole");
  EXPECT_TRUE(report.at("Emb").at("agrees_with_rules").get<bool>());
}

TEST(AdamMiniRules, LlamaWithGroupedQueryAttention) {
  // dim 64, 4 heads, 2 KV heads: k_proj has 2*16 rows x 64 = 2048 = 2 heads of 1024.
  auto b = build("llama-tiny", {});
  Partition p = adam_mini_rules(b.table, b.net->info());
  EXPECT_EQ(find(p, "layers.0.self_attn.q_proj.weight").n_blocks, 4);
  EXPECT_EQ(find(p, "layers.0.self_attn.k_proj.weight").n_blocks, 2);
  EXPECT_EQ(find(p, "layers.0.self_attn.v_proj.weight").n_blocks, 32);
  EXPECT_EQ(find(p, "layers.0.self_attn.o_proj.weight").n_blocks, 64);
  EXPECT_EQ(find(p, "layers.0.mlp.gate_proj.weight").n_blocks, 176);
  EXPECT_EQ(find(p, "layers.0.mlp.down_proj.weight").n_blocks, 64);
  EXPECT_EQ(find(p, "embed_tokens.weight").n_blocks, 256);
  EXPECT_EQ(find(p, "lm_head.weight").n_blocks, 256);
  EXPECT_EQ(find(p, "layers.0.input_layernorm.weight").n_blocks, 1);
  EXPECT_EQ(find(p, "norm.weight").n_blocks, 1);
  EXPECT_FALSE(find(p, "layers.0.post_attention_layernorm.weight").weight_decay);
  // About one state element per parameter: m plus a few v's.
  int64_t numel = 0;
  for (const auto& e : b.table.entries()) numel += e.numel;
  EXPECT_LT(static_cast<double>(p.state_elements()) / (2.0 * numel), 0.51);
}

TEST(AdamMiniConfig, RoundTripsExactly) {
  auto b = build("llama-tiny", {"n_layer=1"});
  Partition p = adam_mini_rules(b.table, b.net->info());
  json j = adam_mini_to_json(p, b.net->info(), "rules", json::object());
  const std::string path = ::testing::TempDir() + "/am.json";
  write_json_atomic(path, j);
  json back = read_config(path, "adam_mini");
  EXPECT_EQ(back, j);
  Partition q = adam_mini_from_json(back, b.table, path);
  EXPECT_EQ(adam_mini_to_json(q, b.net->info(), "rules", json::object()), j);
}

TEST(AdamMiniSlices, FusedWeightsCutPerSliceAndRoundTrip) {
  // HF GPT-2's fused c_attn (Conv1D [8, 24]) and nn.MultiheadAttention's in_proj_weight ([24, 8]),
  // dim 8, 2 heads of 4 output units: q, k -> 2 blocks each, v -> 8; the biases stay per element as the
  // official rules have them; the rest of the table is the rules' partition.
  const ParamTable table({{"h.0.attn.c_attn.weight", torch::zeros({8, 24})},
                          {"h.0.attn.c_attn.bias", torch::zeros({24})},
                          {"mha.in_proj_weight", torch::zeros({24, 8})},
                          {"h.0.mlp.c_fc.weight", torch::zeros({8, 32})}});
  ModelInfo info;
  info.dim = 8;
  info.n_heads = 2;
  const Partition rules = adam_mini_rules(table, info);
  const Partition p = adam_mini_slices(table, info);
  for (size_t i : {size_t(0), size_t(2)}) {
    EXPECT_EQ(p.params[i].granularity, Granularity::Sliced);
    ASSERT_EQ(p.params[i].regions.size(), 3u);
    EXPECT_EQ(p.params[i].n_blocks, 2 + 2 + 8);
    EXPECT_EQ(p.params[i].regions[0].block_numel(), 4 * 8);  // a head: 4 output units of 8 inputs
    EXPECT_EQ(p.params[i].regions[2].block_numel(), 8);      // an output unit
  }
  EXPECT_EQ(p.params[0].regions[0].runs, 8);  // Conv1D: a head's columns in every row
  EXPECT_EQ(p.params[2].regions[0].runs, 1);  // [3d, d]: a head's rows, contiguous
  EXPECT_EQ(p.params[1].granularity, rules.params[1].granularity);
  EXPECT_EQ(p.params[3].n_blocks, rules.params[3].n_blocks);
  EXPECT_EQ(p.state_elements(), rules.state_elements() - rules.params[0].n_blocks - rules.params[2].n_blocks + 24);
  const json j = adam_mini_to_json(p, info, "slices", json::object());
  const Partition q = adam_mini_from_json(j, table, "am.json");
  EXPECT_EQ(adam_mini_to_json(q, info, "slices", json::object()), j);
  EXPECT_TRUE(torch::equal(block_ids(q.params[0]), block_ids(p.params[0])));
  json bad = j;
  bad["params"][0]["head_dim"] = 3;  // 8 output units do not split into heads of 3
  EXPECT_THROW(adam_mini_from_json(bad, table, "am.json"), UserError);
}

TEST(AdamMiniConfig, ErrorsNameTheKey) {
  auto b = build("gpt2-tiny", {"n_layer=1"});
  auto other = build("gpt2-tiny", {"n_layer=1", "dim=32"});
  json j =
      adam_mini_to_json(adam_mini_rules(other.table, other.net->info()), other.net->info(), "rules", json::object());
  auto expect_error = [&](const json& cfg, const std::string& fragment) {
    try {
      adam_mini_from_json(cfg, b.table, "x.json");
      FAIL() << "expected an error mentioning " << fragment;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(j, ".shape");  // a config for another model
  json missing = adam_mini_to_json(adam_mini_rules(b.table, b.net->info()), b.net->info(), "rules", json::object());
  missing["params"].erase(3);
  expect_error(missing, "lacks model parameter");
  json renamed = adam_mini_to_json(adam_mini_rules(b.table, b.net->info()), b.net->info(), "rules", json::object());
  renamed["params"][0]["name"] = "nope.weight";
  expect_error(renamed, "params[0].name");
  const std::string path = ::testing::TempDir() + "/truncated.json";
  {
    std::ofstream f(path);
    f << j.dump().substr(0, 100);
  }
  EXPECT_THROW(read_config(path, "adam_mini"), UserError);
  write_json_atomic(path, j);
  try {
    read_config(path, "sgd_sai");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("\"format\""), std::string::npos);
  }
}
