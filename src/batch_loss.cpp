// batch_loss.
#include "batch_loss.h"

#include <sstream>

#include "errors.h"

namespace bs {

torch::Tensor batch_loss(Network& net, const Batch& batch, LossKind loss, const std::string& data_name) {
  torch::Tensor out;
  try {
    out = net.forward(batch.inputs);
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    std::ostringstream s;
    s << "model '" << net.info().name << "' rejected inputs of shape " << batch.inputs.sizes() << " from --data '"
      << data_name << "': " << torch_error_line(e);
    throw UserError(s.str());
  }
  return compute_loss(out, batch.targets, loss);
}

}  // namespace bs
