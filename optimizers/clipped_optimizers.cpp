// Coordinate-wise clipping (Pan & Li 2023, panyan7/adam-vs-sgd): the threshold tau is |g| at index
// int(N c) of the descending sort over all tensors together (c = 0: no clipping, c = 1: tau = 0), times
// threshold_scale; SGDClip and AdamClip apply it through their functors.
#include "clipped_optimizers.h"

#include <cmath>
#include <limits>

#include "cpu_loop.h"
#include "errors.h"
#include "update_functors.h"

namespace bs {

double clip_threshold(const std::vector<torch::Tensor>& grads, double fraction, double scale) {
  if (!(fraction >= 0 && fraction <= 1)) throw UserError("--clip-fraction must be in [0, 1]");
  if (fraction == 0) return std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> flat;
  for (const auto& g : grads)
    if (g.defined()) flat.push_back(g.detach().abs().reshape({-1}).to(torch::kFloat64));
  auto all = torch::cat(flat);
  const int64_t n = all.numel(), idx = static_cast<int64_t>(static_cast<double>(n) * fraction);
  if (idx >= n) return 0.0;
  // Descending index idx is ascending position n-1-idx: the (n-idx)-th smallest.
  return std::get<0>(torch::kthvalue(all, n - idx)).item<double>() * scale;
}

namespace {

class ClipBase : public Optimizer {
 public:
  ClipBase(const OptimizerInputs& in, const OptimizerOptions& o, const ClipOptions& c, int n_states)
      : m_params(in.params), m_names(in.names), m_o(o), m_c(c), m_lr(in.params.size(), o.lr), m_wd(per_param_decay(in, o)),
        m_n_states(n_states) {
    if (!(c.fraction >= 0 && c.fraction <= 1)) throw UserError("--clip-fraction must be in [0, 1]");
    if (!(c.threshold_scale > 0)) throw UserError("--clip-scale must be positive");
  }
  void set_lrs(const std::vector<double>& lr) override { m_lr = lr; }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (const auto& p : m_params) n += m_n_states * p.numel() * p.element_size();
    return n;
  }
  StateDict state_dict() const override {
    StateDict d;
    for (size_t i = 0; i < m_state.size(); ++i)
      for (int k = 0; k < m_n_states; ++k) d.emplace_back(m_names[i] + "/" + state_name(k), m_state[i][k]);
    d.emplace_back("step", torch::tensor(m_step, torch::kInt64));
    return d;
  }
  void load_state_dict(const StateLookup& get) override {
    m_step = get("step").item<int64_t>();
    if (m_step == 0) return;
    init();
    for (size_t i = 0; i < m_state.size(); ++i)
      for (int k = 0; k < m_n_states; ++k) m_state[i][k].copy_(get(m_names[i] + "/" + state_name(k)).reshape({-1}));
  }

 protected:
  virtual std::string state_name(int k) const = 0;
  void init() {
    m_state.clear();
    for (const auto& p : m_params) {
      std::vector<torch::Tensor> s;
      for (int k = 0; k < m_n_states; ++k) s.push_back(torch::zeros({p.numel()}, p.options()));
      m_state.push_back(s);
    }
  }
  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  OptimizerOptions m_o;
  ClipOptions m_c;
  std::vector<double> m_lr, m_wd;
  int m_n_states;
  std::vector<std::vector<torch::Tensor>> m_state;
  int64_t m_step = 0;
};

class SgdClip : public ClipBase {
 public:
  SgdClip(const OptimizerInputs& in, const OptimizerOptions& o, const ClipOptions& c) : ClipBase(in, o, c, 1) {}
  std::string name() const override { return "sgd-clip"; }
  void step() override {
    if (m_state.empty()) init();
    ++m_step;
    std::vector<torch::Tensor> grads;
    for (const auto& p : m_params) grads.push_back(p.grad());
    const double tau = clip_threshold(grads, m_c.fraction, m_c.threshold_scale);
    for (size_t i = 0; i < m_params.size(); ++i) {
      if (!grads[i].defined()) continue;
      auto g = grads[i].contiguous();
      AT_DISPATCH_FLOATING_TYPES(m_params[i].scalar_type(), "sgd_clip", [&] {
        const SgdClipUpdate<scalar_t> f{scalar_t(tau), scalar_t(m_wd[i]), scalar_t(m_o.beta1), scalar_t(m_lr[i]),
                                        m_step == 1};
        scalar_t* p = m_params[i].data_ptr<scalar_t>();
        const scalar_t* gp = g.data_ptr<scalar_t>();
        scalar_t* buf = m_state[i][0].data_ptr<scalar_t>();
        parallel_elements(m_params[i].numel(), [=](int64_t k) { f(p[k], gp[k], buf[k]); });
      });
    }
  }

 protected:
  std::string state_name(int) const override { return "momentum_buffer"; }
};

class AdamClip : public ClipBase {
 public:
  AdamClip(const OptimizerInputs& in, const OptimizerOptions& o, const ClipOptions& c) : ClipBase(in, o, c, 2) {}
  std::string name() const override { return "adam-clip"; }
  void step() override {
    if (m_state.empty()) init();
    ++m_step;
    std::vector<torch::Tensor> decayed;  // tau is taken over g + wd p, the gradient that is clipped
    for (size_t i = 0; i < m_params.size(); ++i) {
      const auto& p = m_params[i];
      decayed.push_back(p.grad().defined() ? p.grad() + m_wd[i] * p.detach() : torch::Tensor());
    }
    const double tau = clip_threshold(decayed, m_c.fraction, m_c.threshold_scale);
    const double bc1 = 1 - std::pow(m_o.beta1, m_step), bc2 = 1 - std::pow(m_o.beta2, m_step);
    for (size_t i = 0; i < m_params.size(); ++i) {
      if (!m_params[i].grad().defined()) continue;
      auto g = m_params[i].grad().contiguous();
      AT_DISPATCH_FLOATING_TYPES(m_params[i].scalar_type(), "adam_clip", [&] {
        using T = scalar_t;
        const AdamClipUpdate<T> f{T(tau), T(m_wd[i]), T(m_o.beta1), T(1 - m_o.beta1), T(m_o.beta2), T(1 - m_o.beta2),
                                  T(1 / std::sqrt(bc2)), T(m_o.eps), T(m_lr[i] / bc1)};
        T* p = m_params[i].data_ptr<T>();
        const T* gp = g.data_ptr<T>();
        T* m = m_state[i][0].data_ptr<T>();
        T* v = m_state[i][1].data_ptr<T>();
        parallel_elements(m_params[i].numel(), [=](int64_t k) { f(p[k], gp[k], m[k], v[k]); });
      });
    }
  }

 protected:
  std::string state_name(int k) const override { return k == 0 ? "exp_avg" : "exp_avg_sq"; }
};

}  // namespace

std::unique_ptr<Optimizer> make_clipped(const std::string& name, const OptimizerInputs& in, const OptimizerOptions& o,
                                        const ClipOptions& c) {
  if (name == "sgd-clip") return std::make_unique<SgdClip>(in, o, c);
  return std::make_unique<AdamClip>(in, o, c);
}

}  // namespace bs
