// LibTorch's torch::optim::AdamW (PyTorch semantics) as `torch-adamw`: the baseline the fused
// optimizers are measured and tested against.
#include <cmath>

#include "errors.h"
#include "optimizer.h"

namespace bs {

std::unique_ptr<Optimizer> make_torch_adamw(const OptimizerInputs& in, const OptimizerOptions& o);

namespace {

class TorchAdamW : public Optimizer {
 public:
  // One parameter group per tensor, so each can carry its own (blockwise) learning rate.
  TorchAdamW(const OptimizerInputs& in, const OptimizerOptions& o)
      : m_params(in.params), m_names(in.names), m_opt(groups(in, o), options(o)) {}
  std::string name() const override { return "torch-adamw"; }
  void set_lrs(const std::vector<double>& lr) override {
    auto& gs = m_opt.param_groups();
    for (size_t i = 0; i < gs.size(); ++i) static_cast<torch::optim::AdamWOptions&>(gs[i].options()).lr(lr[i]);
  }
  void step() override { m_opt.step(); }
  StateDict state_dict() const override {
    StateWriter w(m_names);
    int64_t step = 0;
    for (size_t i = 0; i < m_params.size(); ++i) {
      auto it = m_opt.state().find(key(i));
      if (it == m_opt.state().end()) continue;
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      w.tensor(i, "exp_avg", st.exp_avg()).tensor(i, "exp_avg_sq", st.exp_avg_sq());
      step = st.step();
    }
    return w.finish(step);
  }
  void load_state_dict(const StateLookup& get) override {
    const StateReader r(get, m_names);
    const int64_t step = r.step();
    if (step == 0) return;
    for (size_t i = 0; i < m_params.size(); ++i) {
      auto st = std::make_unique<torch::optim::AdamWParamState>();
      st->step(step);
      const auto dtype = m_params[i].scalar_type();
      st->exp_avg(r.tensor(i, "exp_avg", dtype).reshape(m_params[i].sizes()).clone());
      st->exp_avg_sq(r.tensor(i, "exp_avg_sq", dtype).reshape(m_params[i].sizes()).clone());
      m_opt.state()[key(i)] = std::move(st);
    }
  }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (const auto& p : m_params) n += 2 * p.numel() * p.element_size();  // exp_avg + exp_avg_sq
    return n;
  }

 private:
  std::string key(size_t i) const { return c10::guts::to_string(m_params[i].unsafeGetTensorImpl()); }
  static torch::optim::AdamWOptions options(const OptimizerOptions& o) {
    return torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  }
  static std::vector<torch::optim::OptimizerParamGroup> groups(const OptimizerInputs& in, const OptimizerOptions& o) {
    const auto wd = per_param_decay(in, o);
    std::vector<torch::optim::OptimizerParamGroup> g;
    for (size_t i = 0; i < in.params.size(); ++i) {
      auto opts = std::make_unique<torch::optim::AdamWOptions>(options(o));
      opts->weight_decay(wd[i]);
      g.emplace_back(std::vector<torch::Tensor>{in.params[i]}, std::move(opts));
    }
    return g;
  }
  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  torch::optim::AdamW m_opt;
};

}  // namespace

std::unique_ptr<Optimizer> make_torch_adamw(const OptimizerInputs& in, const OptimizerOptions& o) {
  return std::make_unique<TorchAdamW>(in, o);
}

}  // namespace bs
