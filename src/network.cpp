// Network helpers and the TorchScript adapter.
#include "network.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <fstream>

#include "errors.h"

namespace bs {

std::vector<torch::Tensor> Network::parameters() const {
  std::vector<torch::Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

ParameterIndex index_parameters(const NamedTensors& all) {
  ParameterIndex ix;
  std::vector<std::pair<const void*, std::string>> seen;  // TensorImpl -> first name
  for (const auto& [name, t] : all) {
    const void* id = t.unsafeGetTensorImpl();
    auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == id; });
    if (it != seen.end()) {
      ix.aliases.emplace_back(name, it->second);
      continue;
    }
    seen.emplace_back(id, name);
    if (t.requires_grad())
      ix.kept.emplace_back(name, t);
    else
      ix.frozen.push_back(name);
  }
  return ix;
}

NamedTensors Network::named_parameters() const { return bs::index_parameters(all_named_parameters()).kept; }

void Network::index_parameters() {
  auto ix = bs::index_parameters(all_named_parameters());
  m_info.aliases = std::move(ix.aliases);
  m_info.frozen = std::move(ix.frozen);
}

torch::Dtype Network::dtype() const {
  auto params = named_parameters();
  return params.empty() ? torch::kFloat32 : params.front().second.scalar_type();
}

namespace {

class ScriptNetwork : public Network {
 public:
  ScriptNetwork(torch::jit::Module m, ModelInfo info) : m_module(std::move(m)) {
    m_info = std::move(info);
    index_parameters();
  }
  torch::Tensor forward(const torch::Tensor& inputs) override {
    auto out = m_module.forward({inputs});
    if (!out.isTensor()) {  // a Hugging Face-style (logits, ...) tuple or {"logits": ...} dict, most often
      const std::string kind = out.isTuple()         ? "a tuple"
                               : out.isGenericDict() ? "a dict"
                               : out.isList()        ? "a list"
                                                     : out.tagKind();
      throw UserError("model '" + m_info.name + "': forward() returned " + kind +
                      "; it must return one tensor, the logits or outputs the loss takes (wrap the model in a module "
                      "whose forward returns that tensor)");
    }
    return out.toTensor();
  }
  NamedTensors all_named_parameters() const override {
    NamedTensors out;
    for (const auto& item : m_module.named_parameters(true)) out.emplace_back(item.name, item.value);
    return out;
  }
  void to(torch::Dtype dtype) override { m_module.to(dtype); }
  void set_train(bool on) override { m_module.train(on); }

 private:
  torch::jit::Module m_module;
};

}  // namespace

std::unique_ptr<Network> load_torchscript(const std::string& path) {
  if (!std::ifstream(path).good()) throw UserError(param("model") + " '" + path + "': file not found or not readable");
  // TorchScript's graph executor profiles the first calls, then switches to an optimised graph with
  // autodiff subgraphs (TorchScript's own derivative formulas). The switch happens after a fixed number
  // of calls per process, so a resumed run would take other rounding than the uninterrupted one, and
  // the symbolic formulas are not PyTorch eager's (the interop oracle) either. Run every call as the
  // unoptimised graph under eager autograd: deterministic across resumes, equal to eager PyTorch.
  torch::jit::setGraphExecutorOptimize(false);
  torch::jit::Module m;
  try {
    m = torch::jit::load(path);
  } catch (const std::exception& e) {
    throw UserError(param("model") + " '" + path + "': not a TorchScript module (" + torch_error_line(e) + ")");
  }
  // requires_grad is kept as saved: a frozen tensor stays frozen, as in PyTorch.
  ModelInfo info;
  info.name = path;
  info.family = "torchscript";
  auto net = std::make_unique<ScriptNetwork>(std::move(m), std::move(info));
  net->info().tied = !net->info().aliases.empty();
  if (net->named_parameters().empty())
    throw UserError(param("model") + " '" + path +
                    "': the model has no trainable parameters (none with requires_grad)");
  return net;
}

}  // namespace bs
