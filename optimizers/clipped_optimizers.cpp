// Coordinate-wise clipping (Pan & Li 2023, panyan7/adam-vs-sgd): the threshold tau is |g| at index
// int(N c) of the descending sort over all tensors together (c = 0: no clipping, c = 1: tau = 0), times
// threshold_scale; SGDClip and AdamClip apply it through their functors. The order statistic is
// found in about one read of the gradients (order_statistic.h), not by sorting a float64 copy.
#include "clipped_optimizers.h"

#include <cmath>
#include <limits>

#include "cpu_loop.h"
#include "errors.h"
#include "fused_base.h"
#include "update_functors.h"

namespace bs {

double clip_threshold(const std::vector<AbsSource>& values, double fraction, double scale) {
  if (!(fraction >= 0 && fraction <= 1)) throw UserError(param("clip_fraction") + " must be in [0, 1]");
  if (fraction == 0) return std::numeric_limits<double>::infinity();
  const int64_t n = total_values(values), idx = static_cast<int64_t>(static_cast<double>(n) * fraction);
  if (idx >= n) return 0.0;
  // Descending index idx is ascending position n-1-idx.
  return rth_smallest_abs(values, n - 1 - idx) * scale;
}

double clip_threshold(const std::vector<torch::Tensor>& grads, double fraction, double scale) {
  std::vector<AbsSource> values;
  for (const auto& g : grads) values.push_back({g, {}, 0.0});
  return clip_threshold(values, fraction, scale);
}

namespace {

void check(const ClipOptions& c) {
  if (!c.fraction || !(*c.fraction >= 0 && *c.fraction <= 1))
    throw UserError(param("clip_fraction") + " must be in [0, 1]");
  if (!(c.threshold_scale > 0)) throw UserError(param("clip_scale") + " must be positive");
}

class SgdClip : public FusedBase {
 public:
  SgdClip(const OptimizerInputs& in, const OptimizerOptions& o, const ClipOptions& c)
      : FusedBase(in, o, {"momentum_buffer"}), m_c(c) {
    check(c);
  }
  std::string name() const override { return "sgd-clip"; }

 protected:
  std::vector<int64_t> state_numels(size_t i) const override { return {m_params[i].numel()}; }
  void before_step() override {
    std::vector<torch::Tensor> grads;
    for (const auto& p : m_params) grads.push_back(p.grad());
    m_tau = clip_threshold(grads, *m_c.fraction, m_c.threshold_scale);
  }
  BS_DISPATCH_UPDATE
  template <class T>
  TensorJob run(size_t i, const torch::Tensor& g) {
    const SgdClipUpdate<T> f{T(m_tau), T(m_wd[i]), T(m_o.beta1), T(m_lr[i]), m_step == 1};
    return elements_job<1, T>(i, g, f, Ways::two);
  }

 private:
  ClipOptions m_c;
  double m_tau = 0;
};

class AdamClip : public FusedBase {
 public:
  AdamClip(const OptimizerInputs& in, const OptimizerOptions& o, const ClipOptions& c)
      : FusedBase(in, o, {"exp_avg", "exp_avg_sq"}), m_c(c) {
    check(c);
  }
  std::string name() const override { return "adam-clip"; }

 protected:
  std::vector<int64_t> state_numels(size_t i) const override { return {m_params[i].numel(), m_params[i].numel()}; }
  void before_step() override {
    // tau is taken over g + wd p, the gradient that is clipped; over g alone where wd is 0, as the
    // official code adds wd p only where wd != 0 (and then the threshold's pass does not read p).
    std::vector<AbsSource> decayed;
    for (size_t i = 0; i < m_params.size(); ++i)
      decayed.push_back({m_params[i].grad(), m_wd[i] != 0 ? m_params[i] : torch::Tensor(), m_wd[i]});
    m_tau = clip_threshold(decayed, *m_c.fraction, m_c.threshold_scale);
  }
  BS_DISPATCH_UPDATE
  template <class T>
  TensorJob run(size_t i, const torch::Tensor& g) {
    const double bc1 = 1 - std::pow(m_o.beta1, m_step), bc2 = 1 - std::pow(m_o.beta2, m_step);
    const AdamClipUpdate<T> f{T(m_tau),        T(m_wd[i]),       T(m_o.beta1),          T(1 - m_o.beta1),
                              T(m_o.beta2),    T(1 - m_o.beta2), T(1 / std::sqrt(bc2)), T(m_o.eps),
                              T(m_lr[i] / bc1)};
    return elements_job<2, T>(i, g, f);
  }

 private:
  ClipOptions m_c;
  double m_tau = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_clipped(const std::string& name, const OptimizerInputs& in, const OptimizerOptions& o,
                                        const ClipOptions& c) {
  if (name == "sgd-clip") return std::make_unique<SgdClip>(in, o, c);
  return std::make_unique<AdamClip>(in, o, c);
}

}  // namespace bs
