// The loss of a network on one batch: the one forward every stage runs, with the model's rejection of
// the inputs turned into a one-line UserError naming model and data.
#pragma once
#include <string>

#include "data.h"
#include "loss.h"
#include "network.h"

namespace bs {

// The outputs of `net` on `batch`; a model that rejects the inputs becomes a UserError naming model and data.
torch::Tensor batch_outputs(Network& net, const Batch& batch, const std::string& data_name);
// Loss of `net` on `batch`. A model that rejects the inputs becomes a UserError naming model and data.
torch::Tensor batch_loss(Network& net, const Batch& batch, LossKind loss, const std::string& data_name);

}  // namespace bs
