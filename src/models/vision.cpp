// MLP and CNN classifiers. The MLP has n_layer hidden layers of width `hidden` halving each layer.
#include "vision.h"

namespace bs {

MlpNetImpl::MlpNetImpl(const ModelConfig& c) {
  fcs = register_module("fc", torch::nn::ModuleList());
  int64_t in = c.in_features;
  for (const int64_t width : c.mlp_widths()) {
    fcs->push_back(torch::nn::Linear(in, width));
    in = width;
  }
  fcs->push_back(torch::nn::Linear(in, c.n_classes));
}

torch::Tensor MlpNetImpl::forward(const torch::Tensor& x) {
  auto h = x.reshape({x.size(0), -1});
  for (size_t i = 0; i < fcs->size(); ++i) {
    h = fcs[i]->as<torch::nn::Linear>()->forward(h);
    if (i + 1 < fcs->size()) h = torch::relu(h);
  }
  return h;
}

CnnNetImpl::CnnNetImpl(const ModelConfig& c) {
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)));
  conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).padding(1)));
  fc1 = register_module("fc1", torch::nn::Linear(16 * 7 * 7, c.hidden));
  fc2 = register_module("fc2", torch::nn::Linear(c.hidden, c.n_classes));
}

torch::Tensor CnnNetImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
              "cnn expects images of shape [B,1,28,28], got ", x.sizes());
  auto h = torch::max_pool2d(torch::relu(conv1(x)), 2);
  h = torch::max_pool2d(torch::relu(conv2(h)), 2);
  return fc2(torch::relu(fc1(h.reshape({x.size(0), -1}))));
}

}  // namespace bs
