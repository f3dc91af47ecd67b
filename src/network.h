// Network: one interface over the built-in torch::nn models and TorchScript modules loaded from .pt,
// so every later stage sees named parameters and a forward pass, never the model's origin.
#pragma once
#include <torch/script.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace bs {

// Sizes the partitioners need (heads for Adam-mini's per-head blocks); 0 when unknown.
struct ModelInfo {
  std::string name;    // preset name or .pt path
  std::string family;  // gpt2, llama, mlp, cnn, torchscript
  int64_t dim = 0, n_heads = 0, n_kv_heads = 0, n_layer = 0, vocab = 0, seq_len = 0;
  bool tied = false;
  // Names PyTorch's named_parameters() drops or skips: a tensor registered under a second name (tied
  // weights; alias -> the first name, which wins) and frozen tensors (requires_grad false).
  std::vector<std::pair<std::string, std::string>> aliases;
  std::vector<std::string> frozen;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class Network {
 public:
  virtual ~Network() = default;
  virtual torch::Tensor forward(const torch::Tensor& inputs) = 0;
  // The trainable parameters as PyTorch's named_parameters() lists them: a shared tensor once, under
  // its first name, and no frozen tensors. Every stage (products, configs, optimizers, files) uses this.
  NamedTensors named_parameters() const;
  // Every registered parameter slot, shared and frozen ones included, in registration order.
  virtual NamedTensors all_named_parameters() const = 0;
  virtual void to(torch::Dtype dtype) = 0;
  virtual void set_train(bool on) = 0;
  const ModelInfo& info() const { return m_info; }
  ModelInfo& info() { return m_info; }
  std::vector<torch::Tensor> parameters() const;
  torch::Dtype dtype() const;

 protected:
  // Fills m_info.aliases and m_info.frozen from all_named_parameters(); derived constructors call it.
  void index_parameters();
  ModelInfo m_info;
};

// Splits named tensors the way PyTorch's named_parameters() does: the first name of each tensor
// (by identity) is kept, later names become aliases; tensors without requires_grad are frozen.
struct ParameterIndex {
  NamedTensors kept;
  std::vector<std::pair<std::string, std::string>> aliases;  // alias -> kept name
  std::vector<std::string> frozen;
};
ParameterIndex index_parameters(const NamedTensors& all);

// Built-in model: any torch::nn::Module whose forward maps inputs to outputs.
template <class ModuleHolder>
class ZooNetwork : public Network {
 public:
  ZooNetwork(ModuleHolder module, ModelInfo info) : m_module(std::move(module)) {
    m_info = std::move(info);
    index_parameters();
  }
  torch::Tensor forward(const torch::Tensor& inputs) override { return m_module->forward(inputs); }
  NamedTensors all_named_parameters() const override {
    NamedTensors out;
    for (const auto& item : m_module->named_parameters(true)) out.emplace_back(item.key(), item.value());
    return out;
  }
  void to(torch::Dtype dtype) override { m_module->to(dtype); }
  void set_train(bool on) override { m_module->train(on); }

 private:
  ModuleHolder m_module;
};

// A module scripted or traced in PyTorch and saved with torch.jit.save.
std::unique_ptr<Network> load_torchscript(const std::string& path);

}  // namespace bs
