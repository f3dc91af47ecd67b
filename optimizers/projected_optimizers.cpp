// APOLLO, APOLLO-Mini and GaLore (ALGORITHMS.md 5, 6). Moments live in the low-rank space and are not
// reset when the projection is refreshed (at step % gap == 0, counted before the increment); the bias
// correction is folded into the step size lr * sqrt(bc2) / bc1 and weight decay follows the step.
#include "projected_optimizers.h"

#include <cmath>

#include "cpu_loop.h"
#include "errors.h"
#include "update_functors.h"

namespace bs {

bool is_projected_param(const std::string& name, const torch::Tensor& p) {
  return p.dim() == 2 && (name.find("attn") != std::string::npos || name.find("mlp") != std::string::npos);
}

uint64_t next_projection_seed(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) >> 1;
}

torch::Tensor apollo_projection(int64_t m, int64_t n, int64_t r, uint64_t seed, torch::Dtype dtype) {
  auto gen = at::detail::createCPUGenerator(seed);
  const std::vector<int64_t> shape = m >= n ? std::vector<int64_t>{r, n} : std::vector<int64_t>{m, r};
  return (at::normal(0.0, 1.0, shape, gen, torch::TensorOptions().dtype(torch::kFloat32)) / std::sqrt(double(r)))
      .to(dtype);
}

namespace {

// r <- m/(sqrt(v)+eps) with HF moments, elementwise through the shared functor.
torch::Tensor hf_moments(const torch::Tensor& r_in, torch::Tensor& m, torch::Tensor& v, const OptimizerOptions& o) {
  auto r = r_in.contiguous();
  auto out = torch::empty_like(r);
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "hf_moments", [&] {
    using T = scalar_t;
    const HfAdamMoments<T> f{T(o.beta1), T(1 - o.beta1), T(o.beta2), T(1 - o.beta2), T(o.eps)};
    const T* rp = r.data_ptr<T>();
    T* op = out.data_ptr<T>();
    T* mp = m.data_ptr<T>();
    T* vp = v.data_ptr<T>();
    parallel_elements(r.numel(), [=](int64_t k) { op[k] = f(rp[k], mp[k], vp[k]); });
  });
  return out;
}

class Projected : public Optimizer {
 public:
  Projected(std::string name, const OptimizerInputs& in, const OptimizerOptions& o)
      : m_name(std::move(name)),
        m_params(in.params),
        m_names(in.names),
        m_o(o),
        m_p(in.projection),
        m_lr(in.params.size(), o.lr),
        m_wd(per_param_decay(in, o)) {
    const bool mini = m_name == "apollo-mini";
    if (!m_p.rank) m_p.rank = mini ? 1 : (m_name == "galore" ? 128 : 256);
    if (!m_p.scale) m_p.scale = mini ? 128.0 : 1.0;
    if (*m_p.rank <= 0) throw UserError(param("rank") + " must be positive");
    if (!(std::isfinite(*m_p.scale) && *m_p.scale > 0)) throw UserError(param("proj_scale") + " must be positive");
    if (m_p.update_gap <= 0) throw UserError(param("update_proj_gap") + " must be positive");
    m_tensor_scaling = mini;
    for (size_t i = 0; i < m_params.size(); ++i) {
      Slot s;
      s.projected = is_projected_param(m_names[i], m_params[i]);
      if (s.projected) {
        s.frame(m_params[i], *m_p.rank, m_p.seed, in.model_index(i));
      }
      m_slots.push_back(s);
    }
  }
  std::string name() const override { return m_name; }
  void set_lrs(const std::vector<double>& lr) override { m_lr = lr; }

  void step() override {
    const int64_t before = m_step++;
    const double bc1 = 1 - std::pow(m_o.beta1, m_step), bc2 = 1 - std::pow(m_o.beta2, m_step);
    torch::NoGradGuard ng;
    for (size_t i = 0; i < m_params.size(); ++i) {
      auto& p = m_params[i];
      if (!p.grad().defined()) continue;
      const auto G = p.grad();
      Slot& s = m_slots[i];
      const double step_size = m_lr[i] * std::sqrt(bc2) / bc1;
      torch::Tensor update;
      if (!s.projected) {
        if (!s.m.defined()) s.m = torch::zeros_like(p), s.v = torch::zeros_like(p);
        update = hf_moments(G, s.m, s.v, m_o);
      } else {
        if (before % m_p.update_gap == 0) refresh(s, G);
        auto R = s.down(G);
        if (!s.m.defined()) s.m = torch::zeros_like(R), s.v = torch::zeros_like(R);
        auto N = hf_moments(R, s.m, s.v, m_o);
        if (m_name == "galore") {
          update = s.up(N) * *m_p.scale;
        } else {
          torch::Tensor factor;
          if (m_tensor_scaling)
            factor = N.norm() / (R.norm() + 1e-8);
          else if (s.right())
            factor = N.norm(2, {1}, true) / (R.norm(2, {1}, true) + 1e-8);  // one per row
          else
            factor = N.norm(2, {0}) / (R.norm(2, {0}) + 1e-8);  // one per column
          update = G * factor;
          const double sq = std::sqrt(*m_p.scale);
          if (m_p.scale_front) update = update * sq;
          if (!m_p.disable_nl) {  // Fira's norm-growth limiter, growth factor 1.01
            const double norm = update.norm().item<double>();
            if (s.nl_prev >= 0) {
              const double lim = std::max(norm / (s.nl_prev + 1e-8), 1.01) / 1.01;
              update = update / lim;
              s.nl_prev = norm / lim;
            } else {
              s.nl_prev = norm;
            }
          }
          if (!m_p.scale_front) update = update * sq;
        }
      }
      p.add_(update, -step_size);
      if (m_wd[i] > 0) p.add_(p, -m_lr[i] * m_wd[i]);
    }
  }

  StateDict state_dict() const override {
    StateWriter w(m_names);
    for (size_t i = 0; i < m_slots.size(); ++i) {
      const Slot& s = m_slots[i];
      if (!s.m.defined()) continue;
      w.tensor(i, "exp_avg", s.m).tensor(i, "exp_avg_sq", s.v);
      if (s.projected) save_projection(w, i, s.proj, s.seed).real(i, "nl_prev", s.nl_prev);
    }
    return w.finish(m_step);
  }
  void load_state_dict(const StateLookup& get) override {
    const StateReader r(get, m_names);
    if (!r.begin(m_step)) return;
    for (size_t i = 0; i < m_slots.size(); ++i) {
      Slot& s = m_slots[i];
      const auto dtype = m_params[i].scalar_type();
      s.m = r.tensor(i, "exp_avg", dtype);
      s.v = r.tensor(i, "exp_avg_sq", dtype);
      if (s.projected) {
        load_projection(r, i, dtype, s.proj, s.seed);
        s.nl_prev = r.real(i, "nl_prev");
      }
    }
  }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (size_t i = 0; i < m_slots.size(); ++i) {
      const Slot& s = m_slots[i];
      const int64_t elt = m_params[i].element_size();
      if (!s.projected) {
        n += 2 * m_params[i].numel() * elt;
      } else {
        n += (2 * s.projected_numel() + s.projection_numel()) * elt + (m_name == "galore" ? 0 : 8);
      }
    }
    return n;
  }

 private:
  struct Slot : LowRankFrame {
    bool projected = false;
    double nl_prev = -1;
    torch::Tensor m, v;
  };
  void refresh(Slot& s, const torch::Tensor& G) {
    if (m_name == "galore") {
      auto [U, S, Vh] = torch::linalg_svd(G.to(torch::kFloat32), false);
      s.proj = (s.right() ? Vh.narrow(0, 0, s.rank) : U.narrow(1, 0, s.rank)).to(G.scalar_type()).contiguous();
    } else {
      s.proj = apollo_projection(s.rows, s.cols, s.rank, s.seed, G.scalar_type());
      s.seed = next_projection_seed(s.seed);
    }
  }
  std::string m_name;
  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  OptimizerOptions m_o;
  ProjectionOptions m_p;
  std::vector<double> m_lr, m_wd;
  std::vector<Slot> m_slots;
  bool m_tensor_scaling = false;
  int64_t m_step = 0;
};

}  // namespace

void LowRankFrame::frame(const torch::Tensor& p, int64_t r, uint64_t base_seed, int64_t index) {
  rows = p.size(0);
  cols = p.size(1);
  rank = std::min(r, std::min(rows, cols));
  seed = base_seed + static_cast<uint64_t>(index) + 1;
}

StateWriter& save_projection(StateWriter& w, size_t i, const torch::Tensor& proj, uint64_t seed) {
  return w.tensor(i, "projection", proj).integer(i, "seed", static_cast<int64_t>(seed));
}

void load_projection(const StateReader& r, size_t i, torch::ScalarType dtype, torch::Tensor& proj, uint64_t& seed) {
  proj = r.tensor(i, "projection", dtype);
  seed = static_cast<uint64_t>(r.integer(i, "seed"));
}

std::unique_ptr<Optimizer> make_projected(const std::string& name, const OptimizerInputs& in,
                                          const OptimizerOptions& o) {
  return std::make_unique<Projected>(name, in, o);
}

}  // namespace bs
