// FRUGAL. Oracle: a scalar loop of ALGORITHMS.md 7.1 (decay, AdamW on the state-full coordinates with
// moments reset at every reselection, signSGD on the rest) given the optimizer's active sets (the random
// selection is not the arithmetic under test); block mode moves inactive tensors by exactly lr*sign(g).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "optimizer.h"

using namespace bs;

namespace {
torch::Tensor grad_at(int64_t n, int t, int i) {
  return torch::sin(torch::arange(n, torch::kFloat64) * (0.37 + i) + 1.1 * t) + 0.01;
}
}  // namespace

TEST(Frugal, CoordinateSelectionsMatchScalarReference) {
  for (FrugalSelection sel : {FrugalSelection::RandK, FrugalSelection::Columns, FrugalSelection::Rows}) {
    torch::manual_seed(1);
    auto w = torch::randn({8, 6}, torch::kFloat64), b = torch::randn({6}, torch::kFloat64);
    OptimizerInputs in({"h.0.mlp.fc_in.weight", "h.0.ln_1.weight"}, {w, b});
    in.frugal.selection = sel;
    in.frugal.update_gap = 3;
    in.frugal.density = 0.34;
    OptimizerOptions o = default_options("frugal");
    o.weight_decay = 0.01;
    auto opt = make_optimizer("frugal", in, o);
    std::vector<double> pw(w.data_ptr<double>(), w.data_ptr<double>() + 48),
        pb(b.data_ptr<double>(), b.data_ptr<double>() + 6);
    std::map<int64_t, std::pair<double, double>> mw;  // moments of active coordinates, reset each period
    std::vector<double> mb(6, 0), vb(6, 0);
    std::set<int64_t> active;
    int tw = 0;
    for (int t = 1; t <= 50; ++t) {
      auto gw = grad_at(48, t, 0).reshape({8, 6}), gb = grad_at(6, t, 1);
      w.mutable_grad() = gw;
      b.mutable_grad() = gb;
      opt->step();
      if ((t - 1) % 3 == 0) {  // a new period: read the drawn active set, reset the moments
        active.clear();
        mw.clear();
        tw = 0;
        for (auto& [k, v] : opt->state_dict())
          if (k == "h.0.mlp.fc_in.weight/active")
            for (int64_t j = 0; j < v.numel(); ++j) active.insert(v[j].item<int64_t>());
      }
      ++tw;
      auto adam = [&](double& p, double g, double& m, double& v, int tt) {
        m = o.beta1 * m + (1 - o.beta1) * g;
        v = o.beta2 * v + (1 - o.beta2) * g * g;
        p -= o.lr / (1 - std::pow(o.beta1, tt)) * m / (std::sqrt(v) / std::sqrt(1 - std::pow(o.beta2, tt)) + o.eps);
      };
      for (int64_t k = 0; k < 48; ++k) {
        const double g = gw.reshape({-1})[k].item<double>();
        pw[k] *= 1 - o.lr * o.weight_decay;
        if (active.count(k))
          adam(pw[k], g, mw[k].first, mw[k].second, tw);
        else
          pw[k] -= o.lr * ((g > 0) - (g < 0));
      }
      for (int64_t k = 0; k < 6; ++k) {
        pb[k] *= 1 - o.lr * o.weight_decay;
        adam(pb[k], gb[k].item<double>(), mb[k], vb[k], t);
      }
    }
    EXPECT_EQ(static_cast<int64_t>(active.size()), sel == FrugalSelection::Columns ? 2 * 8
                                                   : sel == FrugalSelection::Rows  ? 2 * 6
                                                                                   : 16);
    auto rw = torch::tensor(pw, torch::kFloat64).reshape({8, 6}), rb = torch::tensor(pb, torch::kFloat64);
    EXPECT_LT((w - rw).norm().item<double>() / rw.norm().item<double>(), 1e-12) << static_cast<int>(sel);
    EXPECT_LT((b - rb).norm().item<double>() / rb.norm().item<double>(), 1e-12) << static_cast<int>(sel);
  }
}

TEST(Frugal, BlockModeKeepsStateOnlyForActiveTensors) {
  std::vector<torch::Tensor> ps;
  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    ps.push_back(torch::randn({5, 3}, torch::kFloat64));
    names.push_back("h." + std::to_string(i) + ".attn.q_proj.weight");
  }
  OptimizerInputs in(names, ps);
  in.frugal.selection = FrugalSelection::Block;
  in.frugal.density = 0.5;
  OptimizerOptions o = default_options("frugal");
  o.weight_decay = 0;
  auto opt = make_optimizer("frugal", in, o);
  std::vector<torch::Tensor> before;
  for (auto& p : ps) {
    p.mutable_grad() = torch::randn_like(p);
    before.push_back(p.detach().clone());
  }
  opt->step();
  int sign_moved = 0;
  for (size_t i = 0; i < ps.size(); ++i)
    if (torch::allclose(ps[i], before[i] - o.lr * torch::sign(ps[i].grad()), 0, 1e-15)) ++sign_moved;
  EXPECT_EQ(sign_moved, 2);  // round(4 * 0.5) tensors are state-full, the other two move by signSGD
  EXPECT_EQ(opt->state_bytes(), 2 * 2 * 15 * 8);
}
