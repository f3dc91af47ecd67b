// Cross-entropy = nll(log_softmax) with mean reduction (double-backward safe); MSE with mean reduction.
#include "loss.h"

#include <sstream>

#include "errors.h"

namespace bs {

LossKind loss_kind_from_string(const std::string& s) { return parse_word(param("loss"), s, loss_words()); }

static std::string shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

torch::Tensor compute_loss(const torch::Tensor& out, const torch::Tensor& targets, LossKind kind) {
  if (!out.is_floating_point())
    throw UserError(std::string("the model's forward() returned a ") + c10::toString(out.scalar_type()) + " tensor " +
                    shape(out) + "; the loss needs floating-point outputs (logits or predictions)");
  if (kind == LossKind::Mse) {
    if (out.sizes() != targets.sizes())
      throw UserError(param("loss") + " mse: model outputs " + shape(out) + " do not match targets " + shape(targets));
    return torch::mse_loss(out, targets.to(out.scalar_type()));
  }
  if (targets.is_floating_point())
    throw UserError(param("loss") + " ce: targets must be integer class indices (got floating-point targets)");
  if (out.dim() < 2 || out.dim() - 1 != targets.dim() || out.sizes().slice(0, out.dim() - 1) != targets.sizes())
    throw UserError(param("loss") + " ce: model outputs " + shape(out) + " do not fit targets " + shape(targets) +
                    " (expected [B,C] with [B], or [B,T,V] with [B,T])");
  const int64_t C = out.size(-1);
  auto t = targets.reshape({-1});
  if (t.numel() > 0 && (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= C))
    throw UserError(param("loss") + " ce: target class out of range [0, " + std::to_string(C) + ")");
  return torch::nll_loss(torch::log_softmax(out.reshape({-1, C}), -1), t);
}

}  // namespace bs
