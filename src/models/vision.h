// Small image classifiers for MNIST / Fashion-MNIST: an MLP (784-128-64-10, ReLU) and a two-layer CNN.
#pragma once
#include <torch/torch.h>

#include "model_config.h"

namespace bs {

struct MlpNetImpl : torch::nn::Module {
  explicit MlpNetImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B,...] -> logits [B,C]
  torch::nn::ModuleList fcs;
};
TORCH_MODULE(MlpNet);

struct CnnNetImpl : torch::nn::Module {
  explicit CnnNetImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B,1,28,28] -> logits [B,C]
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(CnnNet);

}  // namespace bs
