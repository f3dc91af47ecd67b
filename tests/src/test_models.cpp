// Model zoo. Oracles: Hugging Face parameter names; causality (future tokens cannot change past
// logits); RoPE's relative-position identity; GQA equals full attention with repeated KV heads; and
// double backward (Hessian-vector product) against a central finite difference of the gradient.
#include <gtest/gtest.h>

#include "errors.h"
#include "loss.h"
#include "models/llama.h"
#include "models/model_zoo.h"

using namespace bs;

namespace {

std::vector<std::string> names_of(const Network& net) {
  std::vector<std::string> out;
  for (auto& [n, t] : net.named_parameters()) out.push_back(n);
  return out;
}

int64_t numel_of(const Network& net) {
  int64_t n = 0;
  for (auto& [name, t] : net.named_parameters()) n += t.numel();
  return n;
}

std::unique_ptr<Network> make(const std::string& preset, std::vector<std::string> sets = {}, uint64_t seed = 0) {
  return build_network(preset, resolve_model_config(preset, sets, 0, 0), seed);
}

}  // namespace

TEST(ModelZoo, Gpt2NamesFollowHuggingFace) {
  auto net = make("gpt2-tiny", {"n_layer=1"});
  std::vector<std::string> expected = {"wte.weight", "wpe.weight"};
  for (const char* p :
       {"ln_1.weight", "ln_1.bias", "attn.q_proj.weight", "attn.q_proj.bias", "attn.k_proj.weight", "attn.k_proj.bias",
        "attn.v_proj.weight", "attn.v_proj.bias", "attn.o_proj.weight", "attn.o_proj.bias", "ln_2.weight", "ln_2.bias",
        "mlp.fc_in.weight", "mlp.fc_in.bias", "mlp.fc_out.weight", "mlp.fc_out.bias"})
    expected.push_back(std::string("h.0.") + p);
  expected.push_back("ln_f.weight");
  expected.push_back("ln_f.bias");
  EXPECT_EQ(names_of(*net), expected);
  auto untied = make("gpt2-tiny", {"n_layer=1", "tied=false"});
  EXPECT_EQ(names_of(*untied).back(), "lm_head.weight");
}

TEST(ModelZoo, LlamaNamesAndGqaShapes) {
  auto net = make("llama-tiny", {"n_layer=1"});
  std::vector<std::string> expected = {"embed_tokens.weight",
                                       "layers.0.self_attn.q_proj.weight",
                                       "layers.0.self_attn.k_proj.weight",
                                       "layers.0.self_attn.v_proj.weight",
                                       "layers.0.self_attn.o_proj.weight",
                                       "layers.0.mlp.gate_proj.weight",
                                       "layers.0.mlp.up_proj.weight",
                                       "layers.0.mlp.down_proj.weight",
                                       "layers.0.input_layernorm.weight",
                                       "layers.0.post_attention_layernorm.weight",
                                       "norm.weight",
                                       "lm_head.weight"};
  auto got = names_of(*net);
  std::sort(expected.begin(), expected.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
  for (auto& [n, t] : net->named_parameters())
    if (n.find("k_proj") != std::string::npos) {
      EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2 * 16, 64}));
    }
}

TEST(ModelZoo, PresetSizes) {
  for (const char* tiny : {"gpt2-tiny", "llama-tiny", "mlp-mnist", "cnn-mnist"}) {
    const int64_t n = numel_of(*make(tiny));
    EXPECT_GE(n, 20'000) << tiny;
    EXPECT_LE(n, 500'000) << tiny;
  }
  for (const char* cpu : {"gpt2-small-cpu", "llama-small-cpu"}) {
    const int64_t n = numel_of(*make(cpu));
    EXPECT_GE(n, 4'000'000) << cpu;
    EXPECT_LE(n, 10'000'000) << cpu;
  }
  EXPECT_GE(numel_of(*make("gpt2-tiny")), 100'000);
}

// GPT-2 small as Hugging Face counts GPT2LMHeadModel's parameters (tied head): 124,439,808.
TEST(ModelZoo, Gpt2_124mHasGpt2SmallsParameterCount) {
  auto net = build_network("gpt2-124m", resolve_model_config("gpt2-124m", {}, 50257, 0), 0);
  EXPECT_EQ(numel_of(*net), 124'439'808);
  EXPECT_EQ(net->info().seq_len, 1024);
}

// parameter_count (the closed form the memory check reads before anything is allocated) against the
// oracle of the built network's parameters, over every preset and sizes that change each term: ffn,
// untied heads, grouped-query attention, another context, mlp widths that stop halving at 8.
TEST(ModelZoo, ParameterCountIsTheBuiltNetworksCount) {
  std::vector<std::pair<std::string, std::vector<std::string>>> cases;
  for (const auto& preset : preset_names())
    if (preset != "gpt2-124m") cases.push_back({preset, {}});
  cases.push_back({"gpt2-124m", {"n_layer=1"}});
  cases.push_back({"gpt2-tiny", {"tied=false", "ffn=40", "seq_len=24", "vocab=300"}});
  cases.push_back({"llama-tiny", {"tied=true", "n_kv_heads=1", "dim=48", "n_heads=4"}});
  cases.push_back({"llama-tiny", {"ffn=100", "n_layer=3"}});
  cases.push_back({"mlp-mnist", {"n_layer=5", "hidden=40"}});
  cases.push_back({"cnn-mnist", {"hidden=7"}});
  for (const auto& [preset, sets] : cases) {
    const auto cfg = resolve_model_config(preset, sets, preset.rfind("gpt2-124m", 0) == 0 ? 50257 : 0, 0);
    EXPECT_EQ(parameter_count(cfg), static_cast<double>(numel_of(*build_network(preset, cfg, 0)))) << preset;
  }
  // GPT-2 small as Hugging Face counts it, without building it.
  EXPECT_EQ(parameter_count(resolve_model_config("gpt2-124m", {}, 50257, 0)), 124'439'808.0);
}

// A model whose parameters and gradients cannot fit is refused with the count and the need, naming
// where the sizes came from; one that fits passes. The budget is BLOCKSHARP_MEMORY_BUDGET's.
TEST(ModelZoo, ModelTooLargeForMemoryIsRefusedBeforeItIsBuilt) {
  const char* kept = std::getenv("BLOCKSHARP_MEMORY_BUDGET");
  const std::string before = kept ? kept : "";
  setenv("BLOCKSHARP_MEMORY_BUDGET", "100000000", 1);  // 100 MB
  const auto tiny = resolve_model_config("gpt2-tiny", {}, 0, 0);
  EXPECT_NO_THROW(require_model_fits(tiny, 8, 8, 64, "--model 'gpt2-tiny'"));
  // 2 layers of dim 4096 (12 dim^2 each) and the embeddings: 404,078,592 parameters, 3.0 GiB as float32.
  const auto wide = resolve_model_config("gpt2-tiny", {"dim=4096"}, 0, 0);
  try {
    require_model_fits(wide, 4, 0, 0, "--set dim=4096");
    ADD_FAILURE() << "a 404.1M-parameter model passed a 100 MB budget";
  } catch (const UserError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("--set dim=4096: a gpt2 model of 404.1M parameters needs at least 3.0 GiB"), std::string::npos)
        << what;
    EXPECT_NE(what.find("95 MiB is available"), std::string::npos) << what;
  }
  if (kept)
    setenv("BLOCKSHARP_MEMORY_BUDGET", before.c_str(), 1);
  else
    unsetenv("BLOCKSHARP_MEMORY_BUDGET");
}

TEST(ModelZoo, BadPresetAndSetKeysAreUserErrors) {
  EXPECT_THROW(make("gpt3-huge"), UserError);
  EXPECT_THROW(make("gpt2-tiny", {"depth=3"}), UserError);
  EXPECT_THROW(make("gpt2-tiny", {"n_heads=5"}), UserError);
  EXPECT_THROW(make("gpt2-tiny", {"n_layer"}), UserError);
  EXPECT_THROW(make("llama-tiny", {"n_kv_heads=3"}), UserError);
  EXPECT_THROW(make("llama-tiny", {"dim=12", "n_heads=4"}), UserError);  // head dimension 3: RoPE needs pairs
  EXPECT_THROW(make("gpt2-tiny", {"dim=0"}), UserError);  // was LibTorch's "from is out of bounds for float"
  EXPECT_THROW(make("llama-tiny", {"n_heads=0"}), UserError);
  EXPECT_THROW(make("mlp-mnist", {"hidden=0"}), UserError);
  EXPECT_THROW(make("cnn-mnist", {"hidden=0"}), UserError);
}

TEST(ModelZoo, LanguageModelsAreCausal) {
  for (const char* preset : {"gpt2-tiny", "llama-tiny"}) {
    auto net = make(preset, {"n_layer=1", "seq_len=12"});
    auto x = torch::randint(0, 256, {2, 12}, torch::kLong);
    auto y = x.clone();
    y.index_put_({torch::indexing::Slice(), 7}, (x.index({torch::indexing::Slice(), 7}) + 1) % 256);
    torch::NoGradGuard g;
    auto a = net->forward(x), b = net->forward(y);
    EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 7), b.narrow(1, 0, 7), 0, 0)) << preset;
    EXPECT_FALSE(torch::allclose(a.narrow(1, 7, 1), b.narrow(1, 7, 1))) << preset;
  }
}

TEST(ModelZoo, RopeDotProductDependsOnlyOnOffset) {
  auto q = torch::randn({1, 1, 1, 8}, torch::kFloat64).expand({1, 1, 10, 8}).contiguous();
  auto k = torch::randn({1, 1, 1, 8}, torch::kFloat64).expand({1, 1, 10, 8}).contiguous();
  auto rq = apply_rope(q), rk = apply_rope(k);
  auto dot = [&](int m, int n) { return (rq[0][0][m] * rk[0][0][n]).sum().item<double>(); };
  EXPECT_NEAR(dot(5, 2), dot(7, 4), 1e-12);
  EXPECT_NEAR(dot(3, 3), dot(9, 9), 1e-12);
  EXPECT_NEAR(dot(0, 0), (q[0][0][0] * k[0][0][0]).sum().item<double>(), 1e-12);
}

TEST(ModelZoo, GroupedQueryAttentionEqualsRepeatedHeads) {
  auto gqa = make("llama-tiny", {"n_layer=1", "seq_len=8"}, 3);  // 4 heads, 2 KV heads
  auto full = make("llama-tiny", {"n_layer=1", "seq_len=8", "n_kv_heads=4"}, 5);
  {
    torch::NoGradGuard g;
    auto src = gqa->named_parameters();
    auto dst = full->named_parameters();
    for (size_t i = 0; i < src.size(); ++i) {
      auto& [name, t] = src[i];
      if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
        // KV head j serves query heads 2j and 2j+1: repeat each head's 16 rows twice in place.
        dst[i].second.copy_(t.view({2, 1, 16, 64}).expand({2, 2, 16, 64}).reshape({64, 64}));
      } else {
        dst[i].second.copy_(t);
      }
    }
  }
  auto x = torch::randint(0, 256, {2, 8}, torch::kLong);
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::allclose(gqa->forward(x), full->forward(x), 1e-5, 1e-6));
}

// Double backward through every preset: H v from autograd vs (g(w + h v) - g(w - h v)) / 2h.
TEST(ModelZoo, HessianVectorProductMatchesFiniteDifference) {
  struct Case {
    const char* preset;
    std::vector<std::string> sets;
    torch::Tensor x, y;
  };
  torch::manual_seed(11);
  std::vector<Case> cases = {
      {"gpt2-tiny",
       {"n_layer=1", "dim=16", "n_heads=2", "seq_len=6", "vocab=32", "tied=false"},
       torch::randint(0, 32, {2, 6}),
       torch::randint(0, 32, {2, 6})},
      {"llama-tiny",
       {"n_layer=1", "dim=16", "n_heads=4", "n_kv_heads=2", "seq_len=6", "vocab=32"},
       torch::randint(0, 32, {2, 6}),
       torch::randint(0, 32, {2, 6})},
      {"mlp-mnist", {"hidden=16"}, torch::randn({4, 1, 28, 28}, torch::kFloat64), torch::randint(0, 10, {4})},
      {"cnn-mnist", {"hidden=8"}, torch::randn({2, 1, 28, 28}, torch::kFloat64), torch::randint(0, 10, {2})},
  };
  for (auto& c : cases) {
    auto net = build_network(c.preset, resolve_model_config(c.preset, c.sets, 0, 0), 1);
    net->to(torch::kFloat64);
    auto params = net->parameters();
    auto grad_at = [&](bool create_graph) {
      auto loss = compute_loss(net->forward(c.x), c.y, LossKind::CrossEntropy);
      return torch::autograd::grad({loss}, params, {}, true, create_graph);
    };
    std::vector<torch::Tensor> v;
    for (auto& p : params) v.push_back(torch::randn_like(p));
    auto g = grad_at(true);
    auto hv = torch::autograd::grad(g, params, v);
    // Small step: ReLU + max-pool kinks lie within 1e-5 of the CNN's weights; float64 keeps the
    // rounding error of a 1e-7 step near 1e-9 relative.
    const double h = 1e-7;
    auto shift = [&](double s) {
      torch::NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i) params[i].add_(v[i], s);
    };
    shift(h);
    auto gp = grad_at(false);
    shift(-2 * h);
    auto gm = grad_at(false);
    shift(h);
    double num = 0, den = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      auto fd = (gp[i] - gm[i]) / (2 * h);
      num += (fd - hv[i]).pow(2).sum().item<double>();
      den += hv[i].pow(2).sum().item<double>();
    }
    EXPECT_LT(std::sqrt(num / den), 1e-6) << c.preset;
  }
}
