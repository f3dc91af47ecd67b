// SGDClip and AdamClip with a global top-c coordinate clipping threshold (Pan & Li 2023).
#pragma once
#include "optimizer.h"
#include "order_statistic.h"

namespace bs {

// tau: |g| at descending index int(N * fraction) over all tensors, times scale (inf when fraction = 0).
double clip_threshold(const std::vector<torch::Tensor>& grads, double fraction, double scale);
// The same over |g + wd p| per tensor (AdamClip's coupled decay), without forming g + wd p.
double clip_threshold(const std::vector<AbsSource>& values, double fraction, double scale);
std::unique_ptr<Optimizer> make_clipped(const std::string& name, const OptimizerInputs& in, const OptimizerOptions& o,
                                        const ClipOptions& c);

}  // namespace bs
