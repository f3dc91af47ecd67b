// AdamW through LibTorch's torch::optim::AdamW (PyTorch semantics: decoupled decay p *= 1 - lr*wd,
// eps after the bias-corrected sqrt(v)). The baseline the fused optimizers are measured against.
#include <cmath>

#include "errors.h"
#include "optimizer.h"

namespace bs {

void validate(const OptimizerOptions& o) {
  auto finite_nonneg = [](double v) { return std::isfinite(v) && v >= 0; };
  if (!(std::isfinite(o.lr) && o.lr > 0)) throw UserError("--lr must be a positive finite number");
  if (!finite_nonneg(o.weight_decay)) throw UserError("--weight-decay must be >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw UserError("--beta1 must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw UserError("--beta2 must be in [0, 1)");
  if (!(std::isfinite(o.eps) && o.eps > 0)) throw UserError("--eps must be positive");
}

namespace {

class TorchAdamW : public Optimizer {
 public:
  // One parameter group per tensor, so each can carry its own (blockwise) learning rate.
  TorchAdamW(const std::vector<torch::Tensor>& params, const OptimizerOptions& o)
      : m_params(params), m_opt(groups(params, o), options(o)) {}
  std::string name() const override { return "adamw"; }
  void set_lrs(const std::vector<double>& lr) override {
    auto& gs = m_opt.param_groups();
    for (size_t i = 0; i < gs.size(); ++i) static_cast<torch::optim::AdamWOptions&>(gs[i].options()).lr(lr[i]);
  }
  void step() override { m_opt.step(); }
  void save(torch::serialize::OutputArchive& ar) const override { m_opt.save(ar); }
  void load(torch::serialize::InputArchive& ar) override { m_opt.load(ar); }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (const auto& p : m_params) n += 2 * p.numel() * p.element_size();  // exp_avg + exp_avg_sq
    return n;
  }

 private:
  static torch::optim::AdamWOptions options(const OptimizerOptions& o) {
    return torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  }
  static std::vector<torch::optim::OptimizerParamGroup> groups(const std::vector<torch::Tensor>& params,
                                                               const OptimizerOptions& o) {
    std::vector<torch::optim::OptimizerParamGroup> g;
    for (const auto& p : params)
      g.emplace_back(std::vector<torch::Tensor>{p}, std::make_unique<torch::optim::AdamWOptions>(options(o)));
    return g;
  }
  std::vector<torch::Tensor> m_params;
  torch::optim::AdamW m_opt;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, const std::vector<torch::Tensor>& params,
                                          const OptimizerOptions& opt) {
  validate(opt);
  if (name == "adamw") return std::make_unique<TorchAdamW>(params, opt);
  throw UserError("--optimizer '" + name + "': unknown optimizer (available: adamw)");
}

}  // namespace bs
