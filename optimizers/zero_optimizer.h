// ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
// Models", 2020) at tensor granularity, like torch.distributed.optim.ZeroRedundancyOptimizer: each
// data-parallel rank owns whole tensors, keeps only their optimizer state and updates only them; the
// owners then broadcast the new values. Gradients are already all-reduced, so the result equals the
// unsharded optimizer's.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "optimizer.h"

namespace bs {

// Owner rank of each tensor: largest first to the least-loaded rank (ties: lowest rank), so state
// bytes per rank come out near 1/world.
std::vector<int> zero1_owners(const std::vector<int64_t>& numel, int world);

// `name`'s optimizer over this rank's tensors. Optimizers whose update couples all tensors (sgd-clip and
// adam-clip: one global threshold; frugal: a selection across tensors) are rejected with a UserError.
std::unique_ptr<Optimizer> make_zero1(const std::string& name, const OptimizerInputs& in, const OptimizerOptions& o);

}  // namespace bs
