// FRUGAL (Zmushko et al., ICML 2025; ALGORITHMS.md 7): every parameter is first decayed
// p *= 1 - lr*wd; projectable weights (2-D, module names with attn, mlp, *_proj, query, key, value, ...)
// keep AdamW state only on a selected subspace -- random coordinates (randk), columns, rows, or whole
// tensors (block) -- and move the rest by signSGD at lr * inactive_lr_scale. The selection is redrawn
// every update_gap steps and the moments (with their step count) are reset, as reset_statistics=True.
#include <cmath>
#include <numeric>
#include <random>

#include "cpu_loop.h"
#include "errors.h"
#include "optimizer.h"
#include "update_functors.h"

namespace bs {

bool is_frugal_projectable(const std::string& name, const torch::Tensor& p) {
  if (p.dim() != 2) return false;
  for (const char* k : {"attn", "mlp", "q_proj", "v_proj", "up_proj", "down_proj", "gate_proj", "k_proj", "o_proj",
                        "query", "value", "key", "intermediate.dense", "output.dense"})
    if (name.find(k) != std::string::npos) return true;
  return false;
}

namespace {

class Frugal : public Optimizer {
 public:
  Frugal(const OptimizerInputs& in, const OptimizerOptions& o)
      : m_params(in.params),
        m_names(in.names),
        m_o(o),
        m_f(in.frugal),
        m_lr(in.params.size(), o.lr),
        m_wd(per_param_decay(in, o)) {
    if (!(m_f.density >= 0 && m_f.density <= 1)) throw UserError(param("density") + " must be in [0, 1]");
    if (m_f.update_gap <= 0) throw UserError(param("update_proj_gap") + " must be positive");
    m_slots.resize(m_params.size());
    for (size_t i = 0; i < m_params.size(); ++i)
      m_slots[i].projectable = is_frugal_projectable(m_names[i], m_params[i]);
  }
  std::string name() const override { return "frugal"; }
  void set_lrs(const std::vector<double>& lr) override { m_lr = lr; }

  void step() override {
    if (m_step % m_f.update_gap == 0) reselect();
    ++m_step;
    for (size_t i = 0; i < m_params.size(); ++i) {
      auto& p = m_params[i];
      if (!p.grad().defined()) continue;
      Slot& s = m_slots[i];
      auto g = p.grad().contiguous().reshape({-1});
      auto pf = p.view({-1});
      const double lr = m_lr[i];
      {
        torch::NoGradGuard ng;
        pf.mul_(1 - lr * m_wd[i]);
      }
      ++s.t;
      AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "frugal", [&] {
        using T = scalar_t;
        const double bc1 = 1 - std::pow(m_o.beta1, s.t), bc2 = 1 - std::pow(m_o.beta2, s.t);
        const AdamWUpdate<T> adam{T(1),         T(m_o.beta1),     T(1 - m_o.beta1),
                                  T(m_o.beta2), T(1 - m_o.beta2), T(1 / std::sqrt(bc2)),
                                  T(m_o.eps),   T(lr / bc1)};
        const SignUpdate<T> sign{T(lr * m_f.inactive_lr_scale)};
        T* pp = pf.data_ptr<T>();
        const T* gp = g.data_ptr<T>();
        if (!s.projectable || s.all_active) {  // full AdamW state
          if (!s.m.defined()) s.m = torch::zeros_like(pf), s.v = torch::zeros_like(pf);
          T* m = s.m.data_ptr<T>();
          T* v = s.v.data_ptr<T>();
          parallel_elements(pf.numel(), [=](int64_t k) { adam(pp[k], gp[k], m[k], v[k]); });
          return;
        }
        const int64_t* idx = s.active.data_ptr<int64_t>();
        const uint8_t* is_active = s.mask.data_ptr<uint8_t>();
        T* m = s.m.data_ptr<T>();
        T* v = s.v.data_ptr<T>();
        parallel_elements(s.active.numel(), [=](int64_t k) { adam(pp[idx[k]], gp[idx[k]], m[k], v[k]); });
        parallel_elements(pf.numel(), [=](int64_t k) {
          if (!is_active[k]) sign(pp[k], gp[k]);
        });
      });
    }
  }

  StateDict state_dict() const override {
    StateWriter w(m_names);
    for (size_t i = 0; i < m_slots.size(); ++i) {
      const Slot& s = m_slots[i];
      if (!s.m.defined()) continue;
      w.tensor(i, "exp_avg", s.m).tensor(i, "exp_avg_sq", s.v).integer(i, "t", s.t);
      if (s.active.defined()) w.tensor(i, "active", s.active);
    }
    return w.global("rng_draws", m_draws).finish(m_step);
  }
  void load_state_dict(const StateLookup& get) override {
    const StateReader r(get, m_names);
    if (!r.begin(m_step)) return;
    m_draws = r.global("rng_draws") - 1;
    reselect();  // rebuild masks and the block choice for the current period, then overwrite the state
    for (size_t i = 0; i < m_slots.size(); ++i) {
      Slot& s = m_slots[i];
      if (!s.m.defined()) continue;
      r.copy_into(i, "exp_avg", s.m);
      r.copy_into(i, "exp_avg_sq", s.v);
      s.t = r.integer(i, "t");
    }
  }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (size_t i = 0; i < m_slots.size(); ++i) {
      const Slot& s = m_slots[i];
      const int64_t elt = m_params[i].element_size();
      if (!s.projectable || s.all_active)
        n += 2 * m_params[i].numel() * elt;
      else if (m_f.selection != FrugalSelection::Block)
        n += 2 * selected_count(i) * elt;
    }
    return n;
  }

 private:
  struct Slot {
    bool projectable = false, all_active = false;
    torch::Tensor active, mask, m, v;  // active flat indices, 0/1 mask, moments on the active set
    int64_t t = 0;                     // steps since the last reset (bias correction)
  };

  int64_t selected_count(size_t i) const {
    const auto& p = m_params[i];
    if (m_f.selection == FrugalSelection::Columns) return static_cast<int64_t>(p.size(1) * m_f.density) * p.size(0);
    if (m_f.selection == FrugalSelection::Rows) return static_cast<int64_t>(p.size(0) * m_f.density) * p.size(1);
    return static_cast<int64_t>(p.numel() * m_f.density);
  }

  // Draws the state-full subspace for this period; all moments restart (reset_statistics=True).
  void reselect() {
    std::mt19937_64 rng(m_f.seed * 1000003ULL + static_cast<uint64_t>(++m_draws));
    std::vector<size_t> proj;
    for (size_t i = 0; i < m_slots.size(); ++i)
      if (m_slots[i].projectable) proj.push_back(i);
    if (m_f.selection == FrugalSelection::Block) {
      std::shuffle(proj.begin(), proj.end(), rng);
      const size_t n_active = static_cast<size_t>(std::llround(proj.size() * m_f.density));
      for (size_t k = 0; k < proj.size(); ++k) {
        Slot& s = m_slots[proj[k]];
        s.all_active = k < n_active;
        s.active = torch::empty({0}, torch::kInt64);
        s.mask = torch::zeros({m_params[proj[k]].numel()}, torch::kUInt8);
      }
    } else {
      for (size_t i : proj) {
        const auto& p = m_params[i];
        const int64_t rows = p.size(0), cols = p.size(1);
        std::vector<int64_t> chosen;
        auto pick = [&](int64_t n, int64_t k) {
          std::vector<int64_t> all(n);
          std::iota(all.begin(), all.end(), 0);
          std::shuffle(all.begin(), all.end(), rng);
          all.resize(k);
          std::sort(all.begin(), all.end());
          return all;
        };
        if (m_f.selection == FrugalSelection::Columns) {
          for (int64_t c : pick(cols, static_cast<int64_t>(cols * m_f.density)))
            for (int64_t r = 0; r < rows; ++r) chosen.push_back(r * cols + c);
          std::sort(chosen.begin(), chosen.end());
        } else if (m_f.selection == FrugalSelection::Rows) {
          for (int64_t r : pick(rows, static_cast<int64_t>(rows * m_f.density)))
            for (int64_t c = 0; c < cols; ++c) chosen.push_back(r * cols + c);
        } else {
          chosen = pick(rows * cols, static_cast<int64_t>(rows * cols * m_f.density));
        }
        Slot& s = m_slots[i];
        s.active = torch::tensor(chosen, torch::kInt64).reshape({static_cast<int64_t>(chosen.size())});
        s.mask = torch::zeros({rows * cols}, torch::kUInt8);
        if (!chosen.empty()) s.mask.index_fill_(0, s.active, 1);
        s.all_active = false;
      }
    }
    for (size_t i = 0; i < m_slots.size(); ++i) {
      Slot& s = m_slots[i];
      if (!s.projectable) {
        if (!s.m.defined())
          s.m = torch::zeros({m_params[i].numel()}, m_params[i].options()), s.v = torch::zeros_like(s.m);
        continue;  // regular parameters keep their AdamW state across periods
      }
      const int64_t n = s.all_active ? m_params[i].numel() : s.active.numel();
      s.m = torch::zeros({n}, m_params[i].options());
      s.v = torch::zeros_like(s.m);
      s.t = 0;
    }
  }

  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  OptimizerOptions m_o;
  FrugalOptions m_f;
  std::vector<double> m_lr, m_wd;
  std::vector<Slot> m_slots;
  int64_t m_step = 0, m_draws = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_frugal(const OptimizerInputs& in, const OptimizerOptions& o) {
  return std::make_unique<Frugal>(in, o);
}

}  // namespace bs
