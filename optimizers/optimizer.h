// The optimizer interface the training loop drives: set the learning rate, step on the gradients in
// place, save/load state keyed by parameter name, report the state's bytes.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "partition.h"

namespace bs {

struct OptimizerOptions {
  double lr = 1e-3, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// The official defaults of each optimizer (ALGORITHMS.md): adamw / adam-mini lr 1e-3, betas
// (0.9, 0.999), eps 1e-8, wd 0.01 (PyTorch AdamW) / 0 (Adam-mini); sgd-sai lr 1e-2, momentum 0.9
// (beta1), eps 1e-8, wd 1e-2.
OptimizerOptions default_options(const std::string& optimizer);

// What an optimizer may need besides the tensors: their names, the Adam-mini partition, SGD-SaI g-SNRs.
struct OptimizerInputs {
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  Partition partition;      // adam-mini (the caller supplies the rules or adam_mini.json)
  std::vector<double> gsnr;  // sgd-sai from sgd_sai.json; empty: measured at the first step, as official
};

// Named state, "<param name>/<state>" plus "step": checkpoints store it by parameter name.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;
using StateLookup = std::function<torch::Tensor(const std::string& key)>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;
  virtual void set_lrs(const std::vector<double>& lr_per_param) = 0;  // blockwise learning rates
  virtual void step() = 0;  // uses each parameter's .grad()
  virtual StateDict state_dict() const = 0;
  virtual void load_state_dict(const StateLookup& get) = 0;
  virtual int64_t state_bytes() const = 0;
};

// Rejects invalid hyperparameters up front, naming the option.
void validate(const OptimizerOptions& o);
std::vector<std::string> optimizer_names();
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, const OptimizerInputs& in, const OptimizerOptions& opt);

}  // namespace bs
