// Checkpoints: one HDF5 file keyed by name: /step, /train_loss, /tracer/warm, /params/<name>,
// /optimizer/<name>/<state>. Written atomically (H5Output); read with every check before any change.
#pragma once
#include <cmath>
#include <string>

#include "optimizer.h"
#include "network.h"

namespace bs {

void save_checkpoint(const std::string& path, int64_t step, const Network& net, const Optimizer& opt, double train_loss,
                     const torch::Tensor& tracer_warm);

struct Checkpoint {
  int64_t step = 0;
  double train_loss = NAN;
};

// Validates before it changes anything: a readable checkpoint, a step within the run, every parameter
// present, of the model's shape and finite; each failure is one line naming the checkpoint.
Checkpoint load_checkpoint(const std::string& path, Network& net, Optimizer& opt, int64_t total_steps);

}  // namespace bs
