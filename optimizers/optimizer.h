// The optimizer interface the training loop drives: set the learning rate, step on the gradients in
// place, save/load state keyed by parameter name, report the state's bytes.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "partition.h"
#include "words.h"

namespace bs {

struct OptimizerOptions {
  double lr = 1e-3, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// Coordinate-wise clipping (sgd-clip, adam-clip): clip the top `fraction` of |g| over all tensors.
struct ClipOptions {
  std::optional<double> fraction;  // unset: the paper's default for the optimizer (sgd-clip 0.1, adam-clip 0.5)
  double threshold_scale = 1.0;
};

// Low-rank projection (apollo, apollo-mini, galore).
struct ProjectionOptions {
  std::optional<int64_t>
      rank;                  // unset: the method's default (apollo 256, apollo-mini 1, galore 128), capped by min(m, n)
  int64_t update_gap = 200;  // regenerate / recompute the projection every gap steps
  std::optional<double> scale;  // unset: default (apollo 1, apollo-mini 128, galore 1)
  bool scale_front = false;     // apollo: scale before the norm-growth limiter
  bool disable_nl = false;      // apollo: no norm-growth limiter
  uint64_t seed = 0;
};

// FRUGAL: a state-full subspace (AdamW) plus signSGD on the rest of each projectable weight.
// FRUGAL's state-full subspace: random coordinates, whole columns or rows, or whole tensors (block).
enum class FrugalSelection { RandK, Columns, Rows, Block };
inline const Words<FrugalSelection>& frugal_selection_words() {
  static const Words<FrugalSelection> w{{"randk", FrugalSelection::RandK},
                                        {"columns", FrugalSelection::Columns},
                                        {"rows", FrugalSelection::Rows},
                                        {"block", FrugalSelection::Block}};
  return w;
}

struct FrugalOptions {
  FrugalSelection selection = FrugalSelection::RandK;
  double density = 0.25;  // fraction of coordinates (or tensors, for block) that are state-full
  int64_t update_gap = 200;
  double inactive_lr_scale = 1.0;  // 1.0 pre-training, 0.1 fine-tuning (README of the official code)
  uint64_t seed = 0;
};

// The official defaults of each optimizer (ALGORITHMS.md): adamw / adam-mini lr 1e-3, betas
// (0.9, 0.999), eps 1e-8, wd 0.01 (PyTorch AdamW) / 0 (Adam-mini); sgd-sai lr 1e-2, momentum 0.9
// (beta1), eps 1e-8, wd 1e-2.
OptimizerOptions default_options(const std::string& optimizer);

// What an optimizer may need besides the tensors: their names, the Adam-mini partition, SGD-SaI g-SNRs.
struct OptimizerInputs {
  OptimizerInputs() = default;
  OptimizerInputs(std::vector<std::string> n, std::vector<torch::Tensor> p, Partition part = {},
                  std::vector<double> g = {})
      : names(std::move(n)), params(std::move(p)), partition(std::move(part)), gsnr(std::move(g)) {}
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  Partition partition;       // adam-mini (the caller supplies the rules or adam_mini.json)
  std::vector<double> gsnr;  // sgd-sai from sgd_sai.json; empty: measured at the first step, as official
  ClipOptions clip;
  ProjectionOptions projection;
  FrugalOptions frugal;
  std::vector<std::string> no_decay;  // --no-decay: name substrings whose tensors get no weight decay
  std::vector<double> weight_decay;   // per tensor (Python's param groups); empty: OptimizerOptions' for all
  std::vector<int64_t> index;         // each tensor's position in the whole model (per-tensor seeds); empty: 0..n-1
  int64_t model_index(size_t i) const { return index.empty() ? static_cast<int64_t>(i) : index[i]; }
};

// Each tensor's weight decay: opt.weight_decay unless its name contains a --no-decay substring.
std::vector<double> per_param_decay(const OptimizerInputs& in, const OptimizerOptions& opt);

// Named state, "<param name>/<state>" plus "step": checkpoints store it by parameter name.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;
using StateLookup = std::function<torch::Tensor(const std::string& key)>;

// The one writer and reader of named state, shared by every optimizer: tensor i's entries are
// "<its name>/<key>", the optimizer's own scalars plain keys, and "step" comes last. A state saved
// before the first step holds nothing but "step" (0).
class StateWriter {
 public:
  explicit StateWriter(const std::vector<std::string>& names) : m_names(names) {}
  StateWriter& tensor(size_t i, const std::string& key, const torch::Tensor& t);
  StateWriter& integer(size_t i, const std::string& key, int64_t v);
  StateWriter& real(size_t i, const std::string& key, double v);
  StateWriter& global(const std::string& key, int64_t v);
  StateDict finish(int64_t step);

 private:
  const std::vector<std::string>& m_names;
  StateDict m_d;
};

class StateReader {
 public:
  StateReader(const StateLookup& get, const std::vector<std::string>& names) : m_get(get), m_names(names) {}
  int64_t step() const { return global("step"); }
  // `step` = "step"; false when it is 0: a state saved before the first step holds nothing else.
  bool begin(int64_t& step) const { return (step = this->step()) != 0; }
  // As `dtype`, contiguous.
  torch::Tensor tensor(size_t i, const std::string& key, torch::ScalarType dtype) const;
  // Copied into `into` (same number of entries, else UserError naming the entry).
  void copy_into(size_t i, const std::string& key, torch::Tensor& into) const;
  int64_t integer(size_t i, const std::string& key) const;
  double real(size_t i, const std::string& key) const;
  int64_t global(const std::string& key) const;

 private:
  torch::Tensor raw(size_t i, const std::string& key) const { return m_get(m_names[i] + "/" + key); }
  const StateLookup& m_get;
  const std::vector<std::string>& m_names;
};

// What the preconditioned sharpness (Cohen et al. 2022; ALGORITHMS.md section 12) needs from an optimizer:
// the step size each coordinate's next update takes, D = eta_i / P_i (per tensor, flat, float64; blockwise
// multipliers are in eta_i), so that D^{1/2} H D^{1/2} is the Hessian as the update sees it, and the
// stability threshold of that matrix's largest eigenvalue: (2 + 2 beta1) / (1 - beta1) for momentum kept as
// an exponential average (38 at beta1 = 0.9), 2 without momentum. `per_tensor` is empty before the first
// step (no second moments yet).
struct StepSizes {
  std::vector<torch::Tensor> per_tensor;
  double threshold = 2;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;
  virtual void set_lrs(const std::vector<double>& lr_per_param) = 0;  // blockwise learning rates
  virtual void step() = 0;                                            // uses each parameter's .grad()
  virtual StateDict state_dict() const = 0;
  virtual void load_state_dict(const StateLookup& get) = 0;
  virtual int64_t state_bytes() const = 0;
  // The diagonal preconditioner as step sizes; nullopt for an optimizer whose update is not one
  // (projected, clipped, partial-momentum ones).
  virtual std::optional<StepSizes> step_sizes() const { return std::nullopt; }
};

// Rejects invalid hyperparameters up front, naming the option.
void validate(const OptimizerOptions& o);
std::vector<std::string> optimizer_names();
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, const OptimizerInputs& in,
                                          const OptimizerOptions& opt);

}  // namespace bs
