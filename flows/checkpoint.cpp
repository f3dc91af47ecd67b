// Checkpoint files: save_checkpoint and load_checkpoint.
#include "checkpoint.h"

#include <cmath>
#include <fstream>

#include "errors.h"
#include "finite_check.h"
#include "h5io.h"

namespace bs {

void save_checkpoint(const std::string& path, int64_t step, const Network& net, const Optimizer& opt, double train_loss,
                     const torch::Tensor& tracer_warm) {
  H5Output out(path);
  out.write("/step", step);
  out.write("/train_loss", train_loss);  // the last finite training loss, for a resume that has no step left
  if (tracer_warm.defined()) out.write("/tracer/warm", tracer_warm);
  for (const auto& [name, t] : net.named_parameters()) out.write("/params/" + name, t);
  for (const auto& [key, t] : opt.state_dict()) out.write("/optimizer/" + key, t);
  out.attribute("optimizer", opt.name());
  out.provenance();
  out.commit();
}

Checkpoint load_checkpoint(const std::string& path, Network& net, Optimizer& opt, int64_t total_steps) {
  if (!std::ifstream(path).good()) throw UserError(param("resume") + ": no checkpoint at '" + path + "'");
  if (!h5_has_dataset(path, "step"))
    throw UserError(param("resume") + ": checkpoint '" + path + "' is unreadable or truncated (no /step)");
  Checkpoint c;
  const std::vector<int64_t> scalar;  // /step and /train_loss are HDF5 scalars
  c.step = read_h5_dataset(path, "step", param("resume") + " checkpoint", scalar).item<int64_t>();
  if (c.step < 0 || c.step > total_steps)
    throw UserError(param("resume") + ": checkpoint '" + path + "' has /step " + std::to_string(c.step) +
                    ", outside [0, " + param("steps") + " " + std::to_string(total_steps) + "]");
  if (h5_has_dataset(path, "train_loss"))
    c.train_loss = read_h5_dataset(path, "train_loss", param("resume") + " checkpoint", scalar).item<double>();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (auto& [name, t] : net.named_parameters()) {
    if (!h5_has_dataset(path, "params/" + name))
      throw UserError(param("resume") + ": checkpoint '" + path + "' has no parameter '" + name + "' (another model?)");
    auto saved =
        read_h5_dataset(path, "params/" + name, param("resume") + " checkpoint", t.sizes().vec());  // shape checked
    if (!all_finite(saved))
      throw UserError(param("resume") + ": parameter '" + name + "' in checkpoint '" + path + "' holds NaN or Inf");
    copies.emplace_back(t, saved);
  }
  torch::NoGradGuard g;
  for (auto& [t, saved] : copies) t.copy_(saved.to(t.scalar_type()));
  opt.load_state_dict([&](const std::string& key) {
    if (!h5_has_dataset(path, "optimizer/" + key))
      throw UserError(param("resume") + ": checkpoint '" + path + "' has no optimizer state '" + key +
                      "' (another optimizer?)");
    auto v = read_h5_dataset(path, "optimizer/" + key, param("resume") + " checkpoint");
    if (v.is_floating_point() && !all_finite(v))
      throw UserError(param("resume") + ": optimizer state '" + key + "' in checkpoint '" + path +
                      "' holds NaN or Inf");
    return v;
  });
  return c;
}

}  // namespace bs
