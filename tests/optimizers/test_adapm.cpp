// AdaPM-style partial momentum. Oracle: a scalar loop of the documented rule (none / full / low-rank
// bias-corrected momentum with Adam-mini's blockwise v), given the optimizer's orthonormal projection.
#include <gtest/gtest.h>

#include <cmath>

#include "optimizer.h"
#include "projected_optimizers.h"

using namespace bs;

TEST(AdaPM, PoliciesFollowThePaper) {
  auto m = torch::zeros({4, 4});
  EXPECT_EQ(adapm_policy("wte.weight", m), MomentumPolicy::None);
  EXPECT_EQ(adapm_policy("h.0.attn.o_proj.weight", m), MomentumPolicy::None);
  EXPECT_EQ(adapm_policy("h.0.attn.v_proj.weight", m), MomentumPolicy::Full);
  EXPECT_EQ(adapm_policy("h.0.attn.q_proj.weight", m), MomentumPolicy::LowRank);
  EXPECT_EQ(adapm_policy("layers.0.mlp.up_proj.weight", m), MomentumPolicy::LowRank);
  EXPECT_EQ(adapm_policy("h.0.mlp.fc_in.bias", torch::zeros({4})), MomentumPolicy::Full);
}

TEST(AdaPM, MatchesScalarReference) {
  torch::manual_seed(2);
  std::vector<std::string> names = {"wte.weight", "h.0.attn.v_proj.weight", "h.0.mlp.fc_in.weight"};
  std::vector<torch::Tensor> ps = {torch::randn({6, 4}, torch::kFloat64), torch::randn({4, 4}, torch::kFloat64),
                                   torch::randn({8, 4}, torch::kFloat64)};
  Partition part;
  for (size_t i = 0; i < ps.size(); ++i) {
    ParamEntry e;
    e.name = names[i];
    e.shape = ps[i].sizes().vec();
    e.numel = ps[i].numel();
    part.params.push_back(make_block(e, i == 2 ? Granularity::Whole : Granularity::PerRow, 0));
  }
  OptimizerInputs in(names, ps, part);
  in.projection.rank = 2;
  in.projection.update_gap = 3;
  in.projection.seed = 5;
  OptimizerOptions o = default_options("adapm");
  o.weight_decay = 0.1;
  auto opt = make_optimizer("adapm", in, o);

  std::vector<torch::Tensor> ref, mom(3), vb(3);
  for (auto& p : ps) ref.push_back(p.detach().clone());
  torch::Tensor P;
  uint64_t seed = 5 + 3;  // the third tensor's seed: base + 1-based index
  for (int t = 1; t <= 50; ++t) {
    std::vector<torch::Tensor> gs;
    for (size_t i = 0; i < ps.size(); ++i) {
      gs.push_back(torch::sin(torch::arange(ps[i].numel(), torch::kFloat64) * (0.4 + i) + t).reshape(ps[i].sizes()));
      ps[i].mutable_grad() = gs[i];
    }
    opt->step();
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    for (size_t i = 0; i < ps.size(); ++i) {
      const auto& G = gs[i];
      torch::Tensor d;
      if (i == 0) {
        d = G;
      } else if (i == 1) {
        mom[1] = mom[1].defined() ? o.beta1 * mom[1] + (1 - o.beta1) * G : (1 - o.beta1) * G;
        d = mom[1] / bc1;
      } else {
        if ((t - 1) % 3 == 0) {
          P = adapm_projection(8, 4, 2, seed, torch::kFloat64);  // 2 x 4, orthonormal rows
          seed = next_projection_seed(seed);
        }
        auto R = G.mm(P.t());
        mom[2] = mom[2].defined() ? o.beta1 * mom[2] + (1 - o.beta1) * R : (1 - o.beta1) * R;
        d = mom[2].mm(P) / bc1 + (G - R.mm(P));
      }
      const int64_t bs = part.params[i].block_size, nb = part.params[i].n_blocks;
      if (!vb[i].defined()) vb[i] = torch::zeros({nb}, torch::kFloat64);
      auto gf = G.reshape({nb, bs}), df = d.reshape({nb, bs});
      auto rf = ref[i].view({nb, bs});
      for (int64_t b = 0; b < nb; ++b) {
        const double mean = (gf[b] * gf[b]).mean().item<double>();
        vb[i][b] = o.beta2 * vb[i][b].item<double>() + (1 - o.beta2) * mean;
        const double h = std::sqrt(vb[i][b].item<double>()) / std::sqrt(bc2) + o.eps;
        rf[b].copy_(rf[b] * (1 - o.lr * o.weight_decay) - o.lr * df[b] / h);
      }
    }
  }
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_LT((ps[i] - ref[i]).norm().item<double>() / ref[i].norm().item<double>(), 1e-12) << names[i];
  // Momentum memory: none for wte, full for v_proj, (8+4)*2 for the rank-2 fc_in.
  EXPECT_EQ(opt->state_bytes(), 8 * ((6 + 0) + (4 + 16) + (1 + 24)));
}
