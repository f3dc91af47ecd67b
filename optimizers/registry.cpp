// The optimizer table. Hyperparameter defaults are the official ones (ALGORITHMS.md): PyTorch AdamW;
// Adam-mini v1.1.1 (wd 0); SGD-SaI (lr 1e-2, momentum 0.9, wd 1e-2); GaLore / APOLLO (eps 1e-6 on
// the raw sqrt(v), wd 0); coordinate clipping and AdaPM without weight decay.
#include "registry.h"

#include <cmath>
#include <cstdio>

#include "clipped_optimizers.h"
#include "errors.h"
#include "projected_optimizers.h"

namespace bs {

std::unique_ptr<Optimizer> make_adamw(const OptimizerInputs& in, const OptimizerOptions& o);
std::unique_ptr<Optimizer> make_adam_mini(const OptimizerInputs& in, const OptimizerOptions& o);
std::unique_ptr<Optimizer> make_sgd_sai(const OptimizerInputs& in, const OptimizerOptions& o);
std::unique_ptr<Optimizer> make_torch_adamw(const OptimizerInputs& in, const OptimizerOptions& o);
std::unique_ptr<Optimizer> make_frugal(const OptimizerInputs& in, const OptimizerOptions& o);
std::unique_ptr<Optimizer> make_adapm(const OptimizerInputs& in, const OptimizerOptions& o);

namespace {

OptimizerOptions hyper(double lr, double weight_decay, double eps = 1e-8) {
  OptimizerOptions o;
  o.lr = lr;
  o.weight_decay = weight_decay;
  o.eps = eps;
  return o;
}

OptimizerEntry::Factory projected(const std::string& name) {
  return [name](const OptimizerInputs& in, const OptimizerOptions& o) { return make_projected(name, in, o); };
}

// 0.9, 0.01, 1e-3, 1e-8: plain below 3 decimals, else a short exponent.
std::string number(double v) {
  char buf[32];
  if (v == 0 || std::fabs(v) >= 0.01) {
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.6e", v);  // d.dddddde-XX
  std::string s = buf;
  const size_t e = s.find('e');
  std::string mantissa = s.substr(0, e), exponent = s.substr(e + 1);
  while (mantissa.back() == '0') mantissa.pop_back();
  if (mantissa.back() == '.') mantissa.pop_back();
  const char sign = exponent[0];
  exponent = exponent.substr(1);
  while (exponent.size() > 1 && exponent[0] == '0') exponent.erase(0, 1);
  return mantissa + "e" + (sign == '-' ? "-" : "") + exponent;
}

// Pan & Li's coordinate clipping on `base`, clipping the top `default_fraction` unless told otherwise.
OptimizerEntry clipped(const std::string& name, const std::string& base, double default_fraction) {
  return {
      name,
      "Pan & Li's coordinate clipping of the largest-magnitude gradient entries (a global top fraction), on " + base,
      hyper(1e-3, 0.0),
      param("clip_fraction") + " " + number(default_fraction) + ", " + param("clip_scale") + " 1",
      {},
      false,
      [name, default_fraction](const OptimizerInputs& in, const OptimizerOptions& o) {
        OptimizerInputs c = in;
        if (!c.clip.fraction) c.clip.fraction = default_fraction;
        return make_clipped(name, c, o, c.clip);
      },
      "one global clipping threshold"};
}

std::vector<OptimizerEntry> build() {
  return {
      {"adamw", "fused AdamW, PyTorch semantics", hyper(1e-3, 0.01), "", {"blockwise_lr"}, false, make_adamw, ""},
      {"adam-mini",
       "Adam-mini v1.1.1: full m, one v per block, eps after the bias-corrected sqrt(v), decay before the step, "
       "none for norm/ln/bias",
       hyper(1e-3, 0.0),
       "",
       {"adam_mini", "blockwise_lr"},
       true,
       make_adam_mini,
       ""},
      {"sgd-sai",
       "SGD-SaI: g-SNR fixed at step 1, buffer = g1 then EMA, step lr*gsnr",
       hyper(1e-2, 1e-2),
       "momentum is " + param("beta1") + "; without sgd_sai.json the g-SNR is measured at step 1",
       {"sgd_sai"},
       false,
       make_sgd_sai,
       ""},
      {"apollo",
       "APOLLO: random projection (regenerated every " + param("update_proj_gap") +
           ", moments kept), channel scaling, sqrt(scale), norm-growth limiter",
       hyper(1e-3, 0.0, 1e-6),
       "rank 256, scale 1, gap 200",
       {},
       false,
       projected("apollo"),
       ""},
      {"apollo-mini",
       "APOLLO-Mini: rank-1 random projection, tensor-wise scaling",
       hyper(1e-3, 0.0, 1e-6),
       "rank 1, scale 128, gap 200",
       {},
       false,
       projected("apollo-mini"),
       ""},
      {"galore",
       "GaLore: SVD projection of the gradient every gap steps, Adam in the subspace",
       hyper(1e-3, 0.0, 1e-6),
       "rank 128, scale 1, gap 200",
       {},
       false,
       projected("galore"),
       ""},
      {"frugal",
       "FRUGAL: AdamW on a state-full subspace + signSGD on the rest, reset every gap",
       hyper(1e-3, 0.01),
       "density 0.25, " + param("frugal_selection") + " randk, " + param("inactive_lr_scale") + " 1",
       {},
       false,
       make_frugal,
       "a selection across tensors"},
      {"adapm",
       "AdaPM-style partial momentum: none for embeddings and attention-out, low-rank for Q/K/MLP, full for V and "
       "the rest; Adam-mini's blockwise v",
       hyper(1e-3, 0.0),
       "rank min(m,n)/8",
       {"adam_mini"},
       true,
       make_adapm,
       ""},
      clipped("sgd-clip", "SGD with momentum", 0.1),
      clipped("adam-clip", "Adam", 0.5),
      {"torch-adamw",
       "LibTorch's torch::optim::AdamW, the baseline",
       hyper(1e-3, 0.01),
       "",
       {"blockwise_lr"},
       false,
       make_torch_adamw,
       "",
       /*cpu_only=*/false},
  };
}

}  // namespace

const std::vector<OptimizerEntry>& optimizer_registry() {
  static const std::vector<OptimizerEntry> table = build();
  return table;
}

const OptimizerEntry& find_optimizer(const std::string& name) {
  std::string known;
  for (const auto& e : optimizer_registry()) {
    if (e.name == name) return e;
    known += (known.empty() ? "" : ", ") + e.name;
  }
  throw UserError(param("optimizer") + " '" + name + "': unknown optimizer (available: " + known + ")");
}

std::string optimizer_table_markdown() {
  std::string md =
      "| `" + spelled(param("optimizer")) + "` | what | configs it takes | defaults (official) |\n|---|---|---|---|\n";
  for (const auto& e : optimizer_registry()) {
    std::string configs;
    for (const auto& c : e.configs) {
      configs += (configs.empty() ? "`" : ", `") + c + ".json`";
      if (c == "adam_mini" && e.needs_partition) configs += " (else the official partition rules)";
    }
    if (configs.empty()) configs = "none";
    const auto& d = e.defaults;
    std::string defaults = "lr " + number(d.lr) + ", betas " + number(d.beta1) + "/" + number(d.beta2) + ", eps " +
                           number(d.eps) + ", wd " + number(d.weight_decay);
    if (!e.other_defaults.empty()) defaults += "; " + spelled(e.other_defaults);
    md += "| `" + e.name + "` | " + spelled(e.what) + " | " + configs + " | " + defaults + " |\n";
  }
  return md;
}

}  // namespace bs
