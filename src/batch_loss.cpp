// batch_loss.
#include "batch_loss.h"

#include <sstream>

#include "errors.h"

namespace bs {

torch::Tensor batch_outputs(Network& net, const Batch& batch, const std::string& data_name) {
  try {
    return net.forward(batch.inputs);
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    std::ostringstream s;
    s << batch.inputs.sizes();
    throw UserError("model '" + net.info().name + "' rejected inputs of shape " + s.str() + " from " + param("data") +
                    " '" + data_name + "': " + torch_error_line(e));
  }
}

torch::Tensor batch_loss(Network& net, const Batch& batch, LossKind loss, const std::string& data_name) {
  return compute_loss(batch_outputs(net, batch, data_name), batch.targets, loss);
}

}  // namespace bs
