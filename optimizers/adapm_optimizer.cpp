// AdaPM-style partial momentum (Zhang, Liu, Fang 2025; no official code: ALGORITHMS.md 4). Follows
// the paper: no momentum for embeddings and attention-output weights, low-rank momentum for Q/K and
// MLP weights, full momentum for value weights and everything else; Adam-mini's blockwise second
// moment. Our design (the paper's Algorithm 1 was not available): the low-rank momentum is an EMA of
// the gradient projected on an orthonormal random subspace P (QR of a Gaussian, redrawn every gap
// steps without resetting), and the truncation is bias-corrected by adding back the current gradient's
// component outside the subspace: d = back(M)/bc1 + (G - back(proj(G))), so E[d] tracks E[g].
#include <cmath>

#include "cpu_loop.h"
#include "errors.h"
#include "optimizer.h"
#include "projected_optimizers.h"
#include "update_functors.h"

namespace bs {

MomentumPolicy adapm_policy(const std::string& name, const torch::Tensor& p) {
  auto has = [&](std::initializer_list<const char*> ks) {
    for (const char* k : ks)
      if (name.find(k) != std::string::npos) return true;
    return false;
  };
  if (has({"bias", "norm", "ln_"})) return MomentumPolicy::Full;
  if (has({"embed", "embd", "wte", "wpe"})) return MomentumPolicy::None;
  if (has({"o_proj", "wo.", "attn.proj", "c_proj"})) return MomentumPolicy::None;
  if (p.dim() == 2 && has({"q_proj", "k_proj", "wq.", "wk.", "query", "key", "mlp", "feed_forward"}))
    return MomentumPolicy::LowRank;
  return MomentumPolicy::Full;
}

torch::Tensor adapm_projection(int64_t m, int64_t n, int64_t r, uint64_t seed, torch::Dtype dtype) {
  auto g = apollo_projection(m, n, r, seed, torch::kFloat64);  // Gaussian, r x n or m x r
  const bool right = m >= n;
  auto q = std::get<0>(torch::linalg_qr(right ? g.t() : g));  // orthonormal columns
  return (right ? q.t() : q).contiguous().to(dtype);
}

namespace {

class AdaPM : public Optimizer {
 public:
  AdaPM(const OptimizerInputs& in, const OptimizerOptions& o)
      : m_params(in.params),
        m_names(in.names),
        m_o(o),
        m_part(in.partition),
        m_proj(in.projection),
        m_lr(in.params.size(), o.lr),
        m_wd(per_param_decay(in, o)) {
    if (m_part.params.size() != m_params.size()) throw UserError("adapm: the partition does not match the model");
    for (const auto& b : m_part.params)
      if (!b.regions.empty())
        throw UserError("adapm: '" + b.name + "' has a sliced Adam-mini partition (" + param("adam_mini") +
                        " slices); adapm takes "
                        "contiguous blocks: use an adam_mini.json from " +
                        param("adam_mini") + " rules or measured");
    if (m_proj.update_gap <= 0) throw UserError(param("update_proj_gap") + " must be positive");
    if (m_proj.rank && *m_proj.rank <= 0) throw UserError(param("rank") + " must be positive");
    for (size_t i = 0; i < m_params.size(); ++i) {
      Slot s;
      s.policy = adapm_policy(m_names[i], m_params[i]);
      if (s.policy == MomentumPolicy::LowRank) {
        const int64_t small = std::min(m_params[i].size(0), m_params[i].size(1));
        s.frame(m_params[i], m_proj.rank ? *m_proj.rank : std::max<int64_t>(1, small / 8), m_proj.seed,
                in.model_index(i));
      }
      m_slots.push_back(s);
    }
  }
  std::string name() const override { return "adapm"; }
  void set_lrs(const std::vector<double>& lr) override { m_lr = lr; }

  void step() override {
    const int64_t before = m_step++;
    const double bc1 = 1 - std::pow(m_o.beta1, m_step), bc2 = 1 - std::pow(m_o.beta2, m_step);
    torch::NoGradGuard ng;
    for (size_t i = 0; i < m_params.size(); ++i) {
      auto& p = m_params[i];
      if (!p.grad().defined()) continue;
      Slot& s = m_slots[i];
      const auto G = p.grad().contiguous();
      torch::Tensor d;  // the momentum estimate, bias corrected
      if (s.policy == MomentumPolicy::None) {
        d = G;
      } else if (s.policy == MomentumPolicy::Full) {
        if (!s.m.defined()) s.m = torch::zeros_like(G);
        s.m.mul_(m_o.beta1).add_(G, 1 - m_o.beta1);
        d = s.m / bc1;
      } else {
        if (before % m_proj.update_gap == 0) {
          s.proj = adapm_projection(s.rows, s.cols, s.rank, s.seed, G.scalar_type());
          s.seed = next_projection_seed(s.seed);
        }
        auto R = s.down(G);
        if (!s.m.defined()) s.m = torch::zeros_like(R);
        s.m.mul_(m_o.beta1).add_(R, 1 - m_o.beta1);
        d = s.up(s.m) / bc1 + (G - s.up(R));
      }
      d = d.contiguous();
      if (!s.v.defined()) s.v = torch::zeros({m_part.params[i].n_blocks}, G.options());
      const int64_t bs = m_part.params[i].block_size, nb = m_part.params[i].n_blocks;
      const double wd = m_part.params[i].weight_decay ? m_wd[i] : 0.0;
      AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "adapm", [&] {
        using T = scalar_t;
        const ScaledUpdate<T> f{T(1 - m_lr[i] * wd), T(m_lr[i])};
        const T beta2 = T(m_o.beta2), omb2 = T(1 - m_o.beta2), inv_sqrt_bc2 = T(1 / std::sqrt(bc2)), eps = T(m_o.eps);
        T* pp = p.data_ptr<T>();
        const T* gp = G.data_ptr<T>();
        const T* dp = d.data_ptr<T>();
        T* vb = s.v.data_ptr<T>();
        at::parallel_for(0, nb, std::max<int64_t>(1, kGrain / bs), [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t off = b * bs;
            vb[b] = vb[b] * beta2 + (sum_squares(gp + off, bs) / T(bs)) * omb2;
            const T h = std::sqrt(vb[b]) * inv_sqrt_bc2 + eps;
            elements([=](int64_t k) { f(pp[off + k], dp[off + k], h); }, 0, bs);
          }
        });
      });
    }
  }

  StateDict state_dict() const override {
    StateWriter w(m_names);
    for (size_t i = 0; i < m_slots.size(); ++i) {
      const Slot& s = m_slots[i];
      if (s.v.defined()) w.tensor(i, "v_block", s.v);
      if (s.m.defined()) w.tensor(i, "momentum", s.m);
      if (s.proj.defined()) save_projection(w, i, s.proj, s.seed);
    }
    return w.finish(m_step);
  }
  void load_state_dict(const StateLookup& get) override {
    const StateReader r(get, m_names);
    if (!r.begin(m_step)) return;
    for (size_t i = 0; i < m_slots.size(); ++i) {
      Slot& s = m_slots[i];
      const auto dt = m_params[i].scalar_type();
      s.v = r.tensor(i, "v_block", dt);
      if (s.policy != MomentumPolicy::None) s.m = r.tensor(i, "momentum", dt);
      if (s.policy == MomentumPolicy::LowRank) load_projection(r, i, dt, s.proj, s.seed);
    }
  }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (size_t i = 0; i < m_slots.size(); ++i) {
      const Slot& s = m_slots[i];
      int64_t e = m_part.params[i].n_blocks;
      if (s.policy == MomentumPolicy::Full) e += m_params[i].numel();
      if (s.policy == MomentumPolicy::LowRank) e += s.projected_numel() + s.projection_numel();
      n += e * m_params[i].element_size();
    }
    return n;
  }

 private:
  struct Slot : LowRankFrame {
    MomentumPolicy policy = MomentumPolicy::Full;
    torch::Tensor m, v;
  };
  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  OptimizerOptions m_o;
  Partition m_part;
  ProjectionOptions m_proj;
  std::vector<double> m_lr, m_wd;
  std::vector<Slot> m_slots;
  int64_t m_step = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_adapm(const OptimizerInputs& in, const OptimizerOptions& o) {
  return std::make_unique<AdaPM>(in, o);
}

}  // namespace bs
