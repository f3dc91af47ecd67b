// Fused optimizers. Oracles: the scalar references (reference_optimizers.h) over 50 steps on tensors of
// awkward sizes in float64 (1e-12 relative); LibTorch's torch::optim::AdamW (1e-12); the Adam-mini
// partition of a tiny model; state save -> load -> continue equal to an uninterrupted run bit for bit.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "cpu_loop.h"
#include "errors.h"
#include "models/model_zoo.h"
#include "optimizer.h"
#include "registry.h"
#include "reference_optimizers.h"
#include "update_functors.h"

using namespace bs;

namespace {

const std::vector<int64_t> kSizes = {1, 7, 1023, 4097, 70001};

std::vector<double> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double rel_err(const torch::Tensor& a, const std::vector<double>& b) {
  auto bt = torch::tensor(b, torch::kFloat64);
  return (a.reshape({-1}) - bt).norm().item<double>() / std::max(bt.norm().item<double>(), 1e-300);
}

struct Problem {
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
};

Problem problem(const std::vector<int64_t>& sizes, uint64_t seed) {
  torch::manual_seed(seed);
  Problem pr;
  for (size_t i = 0; i < sizes.size(); ++i) {
    pr.params.push_back(torch::randn({sizes[i]}, torch::kFloat64));
    pr.names.push_back("p" + std::to_string(i) + ".weight");
  }
  return pr;
}

// Gradient of step t for tensor i: deterministic, sign-changing, with a few exact zeros.
torch::Tensor grad_at(int64_t numel, int t, size_t i) {
  auto x = torch::arange(numel, torch::kFloat64);
  auto g = torch::sin(x * 0.37 + 1.3 * t + static_cast<double>(i)) * (1.0 + 0.1 * t);
  return g.masked_fill(torch::fmod(x, 97) == 3, 0.0);
}

std::vector<double> lrs(size_t n, int t) { return std::vector<double>(n, 1e-3 * (1.0 + 0.5 * std::sin(t))); }

}  // namespace

TEST(FusedAdamW, MatchesScalarReferenceOverFiftySteps) {
  auto pr = problem(kSizes, 1);
  OptimizerOptions o;
  o.weight_decay = 0.1;
  OptimizerInputs in{pr.names, pr.params, {}, {}};
  auto opt = make_optimizer("adamw", in, o);
  std::vector<std::vector<double>> p, m, v;
  for (auto& t : pr.params) p.push_back(to_vec(t)), m.emplace_back(t.numel(), 0.0), v.emplace_back(t.numel(), 0.0);
  for (int t = 1; t <= 50; ++t) {
    const auto lr = lrs(pr.params.size(), t);
    opt->set_lrs(lr);
    for (size_t i = 0; i < pr.params.size(); ++i) {
      pr.params[i].mutable_grad() = grad_at(pr.params[i].numel(), t, i);
      reference::adamw(p[i], to_vec(pr.params[i].grad()), m[i], v[i], t,
                       {lr[i], o.weight_decay, o.beta1, o.beta2, o.eps});
    }
    opt->step();
  }
  for (size_t i = 0; i < pr.params.size(); ++i) EXPECT_LT(rel_err(pr.params[i], p[i]), 1e-12) << kSizes[i];
}

TEST(FusedAdamW, MatchesLibTorchAdamW) {
  auto a = problem(kSizes, 2), b = problem(kSizes, 2);
  OptimizerOptions o;
  auto fused = make_optimizer("adamw", {a.names, a.params, {}, {}}, o);
  auto torch_adamw = make_optimizer("torch-adamw", {b.names, b.params, {}, {}}, o);
  for (int t = 1; t <= 50; ++t) {
    for (size_t i = 0; i < a.params.size(); ++i) {
      a.params[i].mutable_grad() = grad_at(a.params[i].numel(), t, i);
      b.params[i].mutable_grad() = grad_at(b.params[i].numel(), t, i);
    }
    fused->set_lrs(lrs(a.params.size(), t));
    torch_adamw->set_lrs(lrs(b.params.size(), t));
    fused->step();
    torch_adamw->step();
  }
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_LT(rel_err(a.params[i], to_vec(b.params[i])), 1e-12) << kSizes[i];
  EXPECT_EQ(fused->state_bytes(), torch_adamw->state_bytes());
}

TEST(AdamMini, MatchesPublishedFormulaOnBlocks) {
  // Tensors cut as Adam-mini cuts them: whole, per row (rows of 7), per element, and one large block.
  auto pr = problem({1023 * 7, 4097, 5, 70001}, 3);
  Partition part;
  const std::vector<Granularity> g = {Granularity::PerRow, Granularity::Whole, Granularity::PerElement,
                                      Granularity::Whole};
  const std::vector<std::vector<int64_t>> shapes = {{1023, 7}, {4097}, {5}, {70001}};
  for (size_t i = 0; i < pr.params.size(); ++i) {
    ParamEntry e;
    e.name = pr.names[i];
    e.shape = shapes[i];
    e.numel = pr.params[i].numel();
    part.params.push_back(make_block(e, g[i], 0));
  }
  part.params[1].weight_decay = false;  // e.g. a norm weight
  OptimizerOptions o = default_options("adam-mini");
  o.weight_decay = 0.1;
  auto opt = make_optimizer("adam-mini", {pr.names, pr.params, part, {}}, o);
  std::vector<std::vector<double>> p, m, vm;
  for (size_t i = 0; i < pr.params.size(); ++i)
    p.push_back(to_vec(pr.params[i])), m.emplace_back(pr.params[i].numel(), 0.0),
        vm.emplace_back(part.params[i].n_blocks, 0.0);
  for (int t = 1; t <= 50; ++t) {
    const auto lr = lrs(pr.params.size(), t);
    opt->set_lrs(lr);
    for (size_t i = 0; i < pr.params.size(); ++i) {
      pr.params[i].mutable_grad() = grad_at(pr.params[i].numel(), t, i);
      const double wd = part.params[i].weight_decay ? o.weight_decay : 0.0;
      reference::adam_mini(p[i], to_vec(pr.params[i].grad()), m[i], vm[i], part.params[i].block_size, t,
                           {lr[i], wd, o.beta1, o.beta2, o.eps});
    }
    opt->step();
  }
  for (size_t i = 0; i < pr.params.size(); ++i) EXPECT_LT(rel_err(pr.params[i], p[i]), 1e-12) << i;
  // One v per block: 1023 + 1 + 5 + 1 scalars next to the full-size m.
  int64_t numel = 0;
  for (auto& t : pr.params) numel += t.numel();
  EXPECT_EQ(opt->state_bytes(), 8 * (numel + 1023 + 1 + 5 + 1));
}

// A fused q/k/v weight of width d: HF GPT-2's Conv1D c_attn [d, 3d] or nn.MultiheadAttention's
// in_proj_weight [3d, d], with its q, k, v slices.
static ParamEntry fused_qkv_entry(bool conv1d, int64_t d) {
  ParamEntry e;
  e.name = conv1d ? "h.0.attn.c_attn.weight" : "layers.0.self_attn.in_proj_weight";
  e.shape = conv1d ? std::vector<int64_t>{d, 3 * d} : std::vector<int64_t>{3 * d, d};
  e.numel = 3 * d * d;
  e.slices = fused_qkv_slices(e.name, e.shape);
  return e;
}

TEST(AdamMini, SlicedFusedWeightsMatchPerBlockReference) {
  // A fused q/k/v weight in both layouts (nn.MultiheadAttention's in_proj_weight [3d, d] and HF
  // GPT-2's Conv1D c_attn [d, 3d]), d = 12, 4 heads of 3: q and k one block per head, v one per
  // output unit. Oracle for the layout: the block of element (r, c) by formula; for the update:
  // the scalar Adam-mini reference run on each block's elements alone.
  const int64_t d = 12, heads = 4, hd = 3;
  for (const bool conv1d : {false, true}) {
    const ParamEntry e = fused_qkv_entry(conv1d, d);
    const std::string& name = e.name;
    const std::vector<int64_t>& shape = e.shape;
    ASSERT_EQ(e.slices.size(), 3u);
    Partition part;
    part.params.push_back(make_sliced_block(e, hd));
    ASSERT_EQ(part.params[0].n_blocks, 2 * heads + d);
    const auto ids = block_ids(part.params[0]);
    for (int64_t r = 0; r < shape[0]; ++r)
      for (int64_t c = 0; c < shape[1]; ++c) {
        const int64_t out = conv1d ? c : r, s = out / d, u = out % d;
        ASSERT_EQ(ids[r][c].item<int64_t>(), s < 2 ? s * heads + u / hd : 2 * heads + u) << r << "," << c;
      }
    torch::manual_seed(4);
    auto param = torch::randn(shape, torch::kFloat64);
    std::vector<double> flat = to_vec(param);
    OptimizerOptions o = default_options("adam-mini");
    o.weight_decay = 0.1;
    auto opt = make_optimizer("adam-mini", {{name}, {param}, part, {}}, o);
    const auto flat_ids = ids.reshape({-1});
    std::vector<std::vector<int64_t>> members(part.params[0].n_blocks);
    for (int64_t k = 0; k < e.numel; ++k) members[flat_ids[k].item<int64_t>()].push_back(k);
    std::vector<std::vector<double>> p(members.size()), m(members.size()),
        v(members.size(), std::vector<double>(1, 0.0));
    for (size_t b = 0; b < members.size(); ++b) {
      for (int64_t k : members[b]) p[b].push_back(flat[k]);
      m[b].assign(members[b].size(), 0.0);
    }
    for (int t = 1; t <= 20; ++t) {
      const auto lr = lrs(1, t);
      opt->set_lrs(lr);
      param.mutable_grad() = grad_at(e.numel, t, 0).view(shape);
      const auto g = to_vec(param.grad());
      for (size_t b = 0; b < members.size(); ++b) {
        std::vector<double> gb;
        for (int64_t k : members[b]) gb.push_back(g[k]);
        reference::adam_mini(p[b], gb, m[b], v[b], static_cast<int64_t>(members[b].size()), t,
                             {lr[0], o.weight_decay, o.beta1, o.beta2, o.eps});
      }
      opt->step();
    }
    std::vector<double> want(e.numel);
    for (size_t b = 0; b < members.size(); ++b)
      for (size_t j = 0; j < members[b].size(); ++j) want[members[b][j]] = p[b][j];
    EXPECT_LT(rel_err(param, want), 1e-12) << name;
  }
}

// The sliced path's bits, float32, in both layouts: a block's sum is T(0) plus each row's run summed
// with sum_squares (cpu_loop.h, the order's statement), the runs in row order; then Adam-mini's v,
// 1/h and AdamMiniUpdate per element. Oracle: that, written block by block from block_ids, against
// the optimizer's row-wise Conv1D passes and block_runs for [3d, in], at 1 and 3 threads and in both
// compiled loop variants. Heads of 12 (runs not a multiple of 8) and of 32; d = 96, so a Conv1D slice
// is 96 columns of 96 rows.
TEST(AdamMini, SlicedFusedWeightsSumInRowOrderBitForBit) {
  const int previous = at::get_num_threads();
  for (const bool conv1d : {true, false})
    for (const int64_t hd : {12, 32})
      for (const int threads : {1, 3})
        for (const LoopVariant variant : {LoopVariant::widest, LoopVariant::baseline}) {
          at::set_num_threads(threads);
          set_loop_variant(variant);
          const ParamEntry e = fused_qkv_entry(conv1d, 96);
          Partition part;
          part.params.push_back(make_sliced_block(e, hd));
          const int64_t nb = part.params[0].n_blocks;
          const auto ids = block_ids(part.params[0]).reshape({-1});
          std::vector<std::vector<int64_t>> members(static_cast<size_t>(nb));  // in row-major order
          for (int64_t k = 0; k < e.numel; ++k) members[ids[k].item<int64_t>()].push_back(k);
          auto param = grad_at(e.numel, 0, 5).to(torch::kFloat32).reshape(e.shape);
          std::vector<float> p(param.data_ptr<float>(), param.data_ptr<float>() + e.numel), m(e.numel, 0.f),
              v(static_cast<size_t>(nb), 0.f);
          OptimizerOptions o = default_options("adam-mini");
          o.weight_decay = 0.1;
          auto opt = make_optimizer("adam-mini", {{e.name}, {param}, part, {}}, o);
          for (int t = 1; t <= 3; ++t) {
            const double lr = lrs(1, t)[0], bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
            opt->set_lrs({lr});
            param.mutable_grad() = grad_at(e.numel, t, 0).to(torch::kFloat32).reshape(e.shape);
            const float* g = param.grad().data_ptr<float>();
            const AdamMiniUpdate<float> f{float(1 - lr * o.weight_decay), float(o.beta1), float(1 - o.beta1),
                                          float(lr / bc1)};
            for (int64_t b = 0; b < nb; ++b) {
              const auto& mem = members[static_cast<size_t>(b)];
              float sq = 0;  // runs: maximal stretches of consecutive indices, i.e. one per row
              for (size_t j = 0; j < mem.size();) {
                size_t end = j + 1;
                while (end < mem.size() && mem[end] == mem[end - 1] + 1) ++end;
                sq += sum_squares(g + mem[j], static_cast<int64_t>(end - j));
                j = end;
              }
              float& vb = v[static_cast<size_t>(b)];
              vb = vb * float(o.beta2) + sq / float(mem.size()) * float(1 - o.beta2);
              const float inv_h = 1.f / (std::sqrt(vb) * float(1 / std::sqrt(bc2)) + float(o.eps));
              for (int64_t k : mem) f(p[k], g[k], m[k], inv_h);
            }
            opt->step();
          }
          set_loop_variant(LoopVariant::widest);
          at::set_num_threads(previous);
          const float* got = param.data_ptr<float>();
          int64_t differ = 0;
          for (int64_t k = 0; k < e.numel; ++k) differ += std::memcmp(&got[k], &p[k], sizeof(float)) != 0;
          EXPECT_EQ(differ, 0) << (conv1d ? "conv1d" : "[3d, in]") << " head " << hd << " threads " << threads;
        }
}

// A sliced partition whose regions are neither all row blocks nor all column blocks of every row (a
// hand-edited adam_mini.json could say so) is refused when the optimizer is built, naming the tensor.
TEST(AdamMini, RefusesSlicesThatMixLayouts) {
  const ParamEntry e = fused_qkv_entry(true, 12);
  Partition part;
  part.params.push_back(make_sliced_block(e, 3));
  part.params[0].regions[0].stride = 0;  // q as if row blocks, k and v as column blocks
  auto param = torch::zeros(e.shape, torch::kFloat32);
  try {
    make_optimizer("adam-mini", {{e.name}, {param}, part, {}}, default_options("adam-mini"));
    FAIL() << "accepted";
  } catch (const UserError& err) {
    EXPECT_NE(std::string(err.what()).find("the slices of 'h.0.attn.c_attn.weight' are neither"), std::string::npos)
        << err.what();
  }
}

TEST(SgdSai, MatchesPublishedFormulaIncludingOneElementTensor) {
  auto pr = problem(kSizes, 4);
  OptimizerOptions o = default_options("sgd-sai");
  auto opt = make_optimizer("sgd-sai", {pr.names, pr.params, {}, {}}, o);
  std::vector<std::vector<double>> p, buf;
  std::vector<double> snr(pr.params.size(), 0.0);
  for (auto& t : pr.params) p.push_back(to_vec(t)), buf.emplace_back(t.numel(), 0.0);
  for (int t = 1; t <= 50; ++t) {
    const auto lr = lrs(pr.params.size(), t);
    opt->set_lrs(lr);
    for (size_t i = 0; i < pr.params.size(); ++i) {
      pr.params[i].mutable_grad() = grad_at(pr.params[i].numel(), t, i);
      reference::sgd_sai(p[i], to_vec(pr.params[i].grad()), buf[i], snr[i], t,
                         {lr[i], o.weight_decay, o.beta1, o.beta2, o.eps});
    }
    opt->step();
  }
  for (size_t i = 0; i < pr.params.size(); ++i) EXPECT_LT(rel_err(pr.params[i], p[i]), 1e-12) << kSizes[i];
  EXPECT_GT(snr[0], 1e7);  // one element: std NaN -> 0, gsnr = |g| / eps
}

TEST(FusedOptimizers, SaveLoadContinueIsBitIdentical) {
  auto gpt =
      build_network("gpt2-tiny", resolve_model_config("gpt2-tiny", {"n_layer=1", "dim=16", "n_heads=2"}, 0, 0), 0);
  std::vector<std::string> names;
  for (auto& [n, t] : gpt->named_parameters()) names.push_back(n);
  for (const char* name : {"adamw", "adam-mini", "sgd-sai", "torch-adamw"}) {
    auto run = [&](bool interrupt) {
      auto net =
          build_network("gpt2-tiny", resolve_model_config("gpt2-tiny", {"n_layer=1", "dim=16", "n_heads=2"}, 0, 0), 0);
      net->to(torch::kFloat64);
      Partition part;
      if (std::string(name) == "adam-mini") {
        ParamTable table(net->named_parameters());
        for (const auto& e : table.entries())
          part.params.push_back(make_block(e, e.shape.size() == 2 ? Granularity::PerRow : Granularity::Whole, 0));
      }
      OptimizerInputs in{names, net->parameters(), part, {}};
      auto opt = make_optimizer(name, in, default_options(name));
      for (int t = 1; t <= 6; ++t) {
        if (interrupt && t == 4) {  // save, rebuild the optimizer, load, continue
          std::map<std::string, torch::Tensor> saved;
          for (auto& [k, v] : opt->state_dict()) saved[k] = v.clone();
          opt = make_optimizer(name, in, default_options(name));
          opt->load_state_dict([&](const std::string& k) { return saved.at(k); });
        }
        auto params = net->parameters();
        for (size_t i = 0; i < params.size(); ++i)
          params[i].mutable_grad() = grad_at(params[i].numel(), t, i).reshape(params[i].sizes());
        opt->set_lrs(lrs(params.size(), t));
        opt->step();
      }
      return net->parameters();
    };
    auto a = run(false), b = run(true);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << name << " " << names[i];
  }
}

TEST(FusedOptimizers, InvalidHyperparametersAndNames) {
  auto pr = problem({3}, 5);
  OptimizerOptions o;
  o.beta1 = 1.0;
  EXPECT_THROW(make_optimizer("adamw", {pr.names, pr.params, {}, {}}, o), UserError);
  EXPECT_THROW(make_optimizer("lion", {pr.names, pr.params, {}, {}}, OptimizerOptions{}), UserError);
  EXPECT_THROW(make_optimizer("adam-mini", {pr.names, pr.params, Partition{}, {}}, OptimizerOptions{}), UserError);
}

// Oracle: an excluded tensor must follow the wd = 0 reference, the others the decayed one.
TEST(FusedOptimizers, NoDecayPatternsExcludeTensors) {
  auto pr = problem({5, 6}, 9);
  pr.names = {"h.0.ln_1.weight", "h.0.mlp.fc_in.weight"};
  OptimizerOptions o;
  o.weight_decay = 0.5;
  OptimizerInputs in(pr.names, pr.params);
  in.no_decay = {"ln_"};
  auto opt = make_optimizer("adamw", in, o);
  std::vector<std::vector<double>> p, m(2), v(2);
  for (auto& t : pr.params) p.push_back(to_vec(t));
  for (size_t i = 0; i < 2; ++i) m[i].assign(p[i].size(), 0), v[i].assign(p[i].size(), 0);
  for (int t = 1; t <= 5; ++t) {
    for (size_t i = 0; i < 2; ++i) {
      pr.params[i].mutable_grad() = grad_at(pr.params[i].numel(), t, i);
      reference::adamw(p[i], to_vec(pr.params[i].grad()), m[i], v[i], t,
                       {o.lr, i == 0 ? 0.0 : 0.5, o.beta1, o.beta2, o.eps});
    }
    opt->step();
  }
  for (size_t i = 0; i < 2; ++i) EXPECT_LT(rel_err(pr.params[i], p[i]), 1e-12) << pr.names[i];
}

// The three config-driven optimizers on a tiny model's tensors (gpt2-tiny cut small, Adam-mini's
// official partition): 50 steps against the scalar references.
TEST(FusedOptimizers, TinyModelFiftyStepsMatchReferences) {
  auto net =
      build_network("gpt2-tiny", resolve_model_config("gpt2-tiny", {"n_layer=1", "dim=16", "n_heads=2"}, 0, 0), 0);
  net->to(torch::kFloat64);
  ParamTable table(net->named_parameters());
  Partition part;
  for (const auto& e : table.entries()) {
    const bool qk =
        e.name.find("q_proj.weight") != std::string::npos || e.name.find("k_proj.weight") != std::string::npos;
    const bool bias = e.name.find("bias") != std::string::npos;
    part.params.push_back(make_block(e,
                                     bias                  ? Granularity::PerElement
                                     : qk                  ? Granularity::PerHead
                                     : e.shape.size() == 2 ? Granularity::PerRow
                                                           : Granularity::Whole,
                                     16 * 16 / 2));
  }
  std::vector<std::string> names;
  for (const auto& e : table.entries()) names.push_back(e.name);
  for (const char* name : {"adamw", "adam-mini", "sgd-sai"}) {
    std::vector<torch::Tensor> ps;
    for (auto& p : net->parameters()) ps.push_back(p.detach().clone());
    OptimizerOptions o = default_options(name);
    o.weight_decay = 0.05;
    auto opt = make_optimizer(name, OptimizerInputs(names, ps, part), o);
    std::vector<std::vector<double>> p, m, v;
    std::vector<double> snr(ps.size());
    for (size_t i = 0; i < ps.size(); ++i) {
      p.push_back(to_vec(ps[i]));
      m.emplace_back(ps[i].numel(), 0.0);
      v.emplace_back(std::string(name) == "adam-mini" ? part.params[i].n_blocks : ps[i].numel(), 0.0);
    }
    for (int t = 1; t <= 50; ++t) {
      const auto lr = lrs(ps.size(), t);
      opt->set_lrs(lr);
      for (size_t i = 0; i < ps.size(); ++i) {
        ps[i].mutable_grad() = grad_at(ps[i].numel(), t, i).reshape(ps[i].sizes());
        const auto g = to_vec(ps[i].grad());
        const reference::Hyper h{lr[i], o.weight_decay, o.beta1, o.beta2, o.eps};
        if (std::string(name) == "adamw") reference::adamw(p[i], g, m[i], v[i], t, h);
        if (std::string(name) == "sgd-sai") reference::sgd_sai(p[i], g, m[i], snr[i], t, h);
        if (std::string(name) == "adam-mini") {
          reference::Hyper hm = h;
          hm.wd = part.params[i].weight_decay ? o.weight_decay : 0.0;
          reference::adam_mini(p[i], g, m[i], v[i], part.params[i].block_size, t, hm);
        }
      }
      opt->step();
    }
    for (size_t i = 0; i < ps.size(); ++i) EXPECT_LT(rel_err(ps[i], p[i]), 1e-12) << name << " " << names[i];
  }
}

// The registry against the published defaults (ALGORITHMS.md: PyTorch AdamW; Adam-mini v1.1.1's
// signature; SGD-SaI's constructor; GaLore/APOLLO's optimizer class, eps 1e-6 and wd 0), and every
// entry builds an optimizer that calls itself by the entry's name.
TEST(OptimizerRegistry, PublishedDefaultsAndEveryEntryBuilds) {
  struct Published {
    const char* name;
    double lr, wd, eps;
  };
  for (const Published& p : {Published{"adamw", 1e-3, 0.01, 1e-8}, Published{"adam-mini", 1e-3, 0.0, 1e-8},
                             Published{"sgd-sai", 1e-2, 1e-2, 1e-8}, Published{"apollo", 1e-3, 0.0, 1e-6},
                             Published{"apollo-mini", 1e-3, 0.0, 1e-6}, Published{"galore", 1e-3, 0.0, 1e-6},
                             Published{"torch-adamw", 1e-3, 0.01, 1e-8}}) {
    const OptimizerOptions o = default_options(p.name);
    EXPECT_EQ(o.lr, p.lr) << p.name;
    EXPECT_EQ(o.weight_decay, p.wd) << p.name;
    EXPECT_EQ(o.eps, p.eps) << p.name;
    EXPECT_EQ(o.beta1, 0.9) << p.name;
    EXPECT_EQ(o.beta2, 0.999) << p.name;
  }
  torch::manual_seed(3);
  const torch::Tensor w = torch::randn({6, 4}, torch::kFloat64);
  Partition part;
  part.params.push_back(make_block(ParamTable({{"w", w}}).entries()[0], Granularity::PerRow, 0));
  std::vector<std::string> names;
  for (const auto& e : optimizer_registry()) {
    names.push_back(e.name);
    OptimizerInputs in{{"w"}, {w.clone()}, e.needs_partition ? part : Partition{}, {}};
    auto opt = make_optimizer(e.name, in, e.defaults);
    EXPECT_EQ(opt->name(), e.name);
    EXPECT_FALSE(e.what.empty()) << e.name;
    EXPECT_EQ(&find_optimizer(e.name), &e);
  }
  EXPECT_EQ(names, optimizer_names());
  try {
    find_optimizer("lion");
    ADD_FAILURE() << "lion was found";
  } catch (const UserError& err) {
    EXPECT_NE(std::string(err.what()).find("available: adamw, adam-mini"), std::string::npos) << err.what();
  }
}

// Oracle for step_sizes() (the tracer's preconditioner): with beta1 = 0 and no weight decay the update is
// -D * g exactly, so each coordinate's reported step size is -delta p / g of the step just taken. Adam-mini
// on fused q/k/v weights in both layouts (strided per-head / per-unit blocks) and AdamW.
TEST(StepSizes, AreTheLastUpdateOverTheGradient) {
  const int64_t d = 12, hd = 3;
  for (const std::string opt_name : {"adamw", "adam-mini"})
    for (const bool conv1d : {false, true}) {
      const ParamEntry e = fused_qkv_entry(conv1d, d);
      const std::string& name = e.name;
      const std::vector<int64_t>& shape = e.shape;
      Partition part;
      part.params.push_back(make_sliced_block(e, hd));
      torch::manual_seed(5);
      auto param = torch::randn(shape, torch::kFloat64);
      OptimizerOptions o = default_options(opt_name);
      o.beta1 = 0;
      o.weight_decay = 0;
      auto opt = make_optimizer(opt_name, {{name}, {param}, part, {}}, o);
      ASSERT_TRUE(opt->step_sizes());
      EXPECT_TRUE(opt->step_sizes()->per_tensor.empty());  // no moments before the first step
      torch::Tensor before;
      for (int t = 1; t <= 3; ++t) {
        opt->set_lrs({1e-3 * t});
        param.mutable_grad() = grad_at(e.numel, t, 0).view(shape);
        before = param.detach().clone();
        opt->step();
      }
      const auto sizes = opt->step_sizes();
      ASSERT_EQ(sizes->per_tensor.size(), 1u);
      EXPECT_DOUBLE_EQ(sizes->threshold, 2.0);  // beta1 = 0: no momentum
      const auto g = param.grad().reshape({-1}), moved = (before - param).reshape({-1});
      const auto nz = g.abs() > 1e-6;  // coordinates with a gradient to divide by
      ASSERT_GT(nz.sum().item<int64_t>(), e.numel / 2);
      const auto want = moved.masked_select(nz) / g.masked_select(nz);
      const auto got = sizes->per_tensor[0].masked_select(nz);
      EXPECT_LT(((got - want).abs().max() / want.abs().max()).item<double>(), 1e-9) << opt_name << " " << name;
    }
}

// Parameters on another device are refused in one line by every optimizer stepping through the CPU
// loop (a host pointer into device memory would crash), and taken by torch-adamw (LibTorch's ops).
TEST(Registry, CpuLoopOptimizersRefuseParametersOnAnotherDevice) {
  const auto meta = torch::empty({4, 4}, torch::TensorOptions().device(torch::kMeta));
  for (const auto& e : optimizer_registry()) {
    OptimizerInputs in({"h.0.mlp.fc_in.weight"}, {meta});
    in.clip.fraction = 0.1;
    if (!e.cpu_only) continue;
    try {
      make_optimizer(e.name, in, default_options(e.name));
      ADD_FAILURE() << e.name << " took a meta parameter";
    } catch (const UserError& err) {
      EXPECT_NE(std::string(err.what()).find("'h.0.mlp.fc_in.weight' is on meta"), std::string::npos) << err.what();
    }
  }
  EXPECT_FALSE(find_optimizer("torch-adamw").cpu_only);
  EXPECT_NO_THROW(make_optimizer("torch-adamw", OptimizerInputs({"w"}, {meta}), default_options("torch-adamw")));
}

// Half-precision parameters are refused when the optimizer is made, naming the tensor and its dtype as
// PyTorch spells it, by every optimizer whose loops are compiled for float32 and float64 (before, the
// first step failed with LibTorch's "not implemented for 'BFloat16'"); float64 is taken.
TEST(Registry, CpuLoopOptimizersRefuseHalfPrecisionParameters) {
  for (const auto& [dtype, word] : {std::pair{torch::kBFloat16, "bfloat16"}, std::pair{torch::kFloat16, "float16"}})
    for (const auto& e : optimizer_registry()) {
      if (!e.cpu_only) continue;
      OptimizerInputs in({"h.0.mlp.fc_in.weight"}, {torch::zeros({4, 4}, dtype)});
      in.clip.fraction = 0.1;
      try {
        make_optimizer(e.name, in, default_options(e.name));
        ADD_FAILURE() << e.name << " took a " << word << " parameter";
      } catch (const UserError& err) {
        EXPECT_NE(std::string(err.what()).find("'h.0.mlp.fc_in.weight' is " + std::string(word)), std::string::npos)
            << err.what();
      }
    }
  EXPECT_NO_THROW(make_optimizer("adamw", OptimizerInputs({"w"}, {torch::zeros({4, 4}, torch::kFloat64)}),
                                 default_options("adamw")));
}

// The CPU loops, Adam-mini's block sums and the clipping threshold split their work across
// LibTorch's OpenMP threads. Oracle: the same steps on one thread. Every registered optimizer,
// float32, 3 steps on tensors large enough to be split (several kGrain chunks; Adam-mini with many
// row blocks and with one block larger than kGrain): the parameters agree bit for bit at 3 threads.
// Left out: the optimizers whose projections are LibTorch's matrix products (APOLLO, GaLore, AdaPM's
// momentum projection), whose own bits follow the thread count (torch::mm of a 512x256 by a 256x64
// differs between 1 and 3 threads with LibTorch 1.13 here).
TEST(FusedOptimizers, SameBitsAtEveryThreadCount) {
  const std::set<std::string> libtorch_products = {"apollo", "apollo-mini", "galore", "adapm"};
  const std::vector<std::string> names = {"h.0.attn.q_proj.weight", "h.0.mlp.fc_in.weight", "h.0.mlp.fc_in.bias",
                                          "h.0.attn.o_proj.weight"};
  const std::vector<std::vector<int64_t>> shapes = {{512, 256}, {1024, 96}, {1024}, {288, 288}};
  const int previous = at::get_num_threads();
  for (const auto& entry : optimizer_registry()) {
    if (libtorch_products.count(entry.name)) continue;
    auto run = [&](int threads) {
      at::set_num_threads(threads);
      std::vector<torch::Tensor> params;
      std::vector<std::pair<std::string, torch::Tensor>> named;
      for (size_t i = 0; i < shapes.size(); ++i) {
        params.push_back(grad_at(c10::multiply_integers(shapes[i]), 0, i + 7).to(torch::kFloat32).reshape(shapes[i]));
        named.emplace_back(names[i], params.back());
      }
      Partition part;
      if (entry.needs_partition) {
        ParamTable table(named);
        for (const auto& e : table.entries())  // the last, 82,944 values, is one block above kGrain
          part.params.push_back(make_block(
              e, e.shape.size() == 2 && e.name != names.back() ? Granularity::PerRow : Granularity::Whole, 0));
      }
      OptimizerInputs in{names, params, part, {}};
      in.clip.fraction = 0.3;
      auto opt = entry.make(in, entry.defaults);
      for (int t = 1; t <= 3; ++t) {
        for (size_t i = 0; i < params.size(); ++i)
          params[i].mutable_grad() = grad_at(params[i].numel(), t, i).to(torch::kFloat32).reshape(params[i].sizes());
        opt->step();
      }
      return params;
    };
    const auto one = run(1), three = run(3);
    at::set_num_threads(previous);
    for (size_t i = 0; i < one.size(); ++i)
      EXPECT_TRUE(torch::equal(one[i], three[i])) << entry.name << " " << names[i];
  }
}

// The update loops run compiled for AVX-512 where the CPU has it and for baseline x86-64 otherwise
// (cpu_loop.h). Oracle: the baseline loop. Every registered optimizer, float32 (16 lanes per
// instruction), 4 steps on a tiny GPT-2's tensors: the parameters agree bit for bit. On a CPU without
// AVX-512 both runs take the baseline loop and the test checks determinism only.
TEST(FusedOptimizers, WideAndBaselineLoopsGiveTheSameBits) {
  const auto config = resolve_model_config("gpt2-tiny", {"n_layer=1", "dim=32", "n_heads=2"}, 0, 0);
  std::vector<std::string> names;
  for (auto& [n, t] : build_network("gpt2-tiny", config, 0)->named_parameters()) names.push_back(n);
  for (const auto& entry : optimizer_registry()) {
    auto run = [&](LoopVariant variant) {
      set_loop_variant(variant);
      auto net = build_network("gpt2-tiny", config, 0);
      Partition part;
      if (entry.needs_partition) {
        ParamTable table(net->named_parameters());
        for (const auto& e : table.entries())
          part.params.push_back(make_block(e, e.shape.size() == 2 ? Granularity::PerRow : Granularity::Whole, 0));
      }
      OptimizerInputs in{names, net->parameters(), part, {}};
      in.clip.fraction = 0.3;
      auto opt = entry.make(in, entry.defaults);
      for (int t = 1; t <= 4; ++t) {
        auto params = net->parameters();
        for (size_t i = 0; i < params.size(); ++i)
          params[i].mutable_grad() = grad_at(params[i].numel(), t, i).to(torch::kFloat32).reshape(params[i].sizes());
        opt->step();
      }
      set_loop_variant(LoopVariant::widest);
      return net->parameters();
    };
    const auto wide = run(LoopVariant::widest), baseline = run(LoopVariant::baseline);
    for (size_t i = 0; i < wide.size(); ++i) {
      ASSERT_EQ(wide[i].scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::equal(wide[i], baseline[i])) << entry.name << " " << names[i];
    }
  }
}
