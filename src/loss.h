// Losses as PyTorch defines them: cross-entropy over logits [B,C] / targets [B], or [B,T,V] / [B,T]
// averaged over all tokens; mean squared error over all elements.
#pragma once
#include <torch/torch.h>

#include <string>

#include "words.h"

namespace bs {

enum class LossKind { CrossEntropy, Mse };
inline const Words<LossKind>& loss_words() {
  static const Words<LossKind> w{{"ce", LossKind::CrossEntropy}, {"mse", LossKind::Mse}};
  return w;
}
LossKind loss_kind_from_string(const std::string& s);  // "ce" | "mse", else UserError naming parameter loss

torch::Tensor compute_loss(const torch::Tensor& outputs, const torch::Tensor& targets, LossKind kind);

}  // namespace bs
