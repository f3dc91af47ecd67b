// The optimizer interface the training loop drives: set the learning rate, step on the gradients in
// place, save/load state keyed by parameter name, report the state's bytes.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace bs {

struct OptimizerOptions {
  double lr = 1e-3, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;
  virtual void set_lrs(const std::vector<double>& lr_per_param) = 0;  // blockwise learning rates
  virtual void step() = 0;  // uses each parameter's .grad()
  virtual void save(torch::serialize::OutputArchive& ar) const = 0;
  virtual void load(torch::serialize::InputArchive& ar) = 0;
  virtual int64_t state_bytes() const = 0;
};

// Rejects invalid hyperparameters up front, naming the option.
void validate(const OptimizerOptions& o);
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, const std::vector<torch::Tensor>& params,
                                          const OptimizerOptions& opt);

}  // namespace bs
