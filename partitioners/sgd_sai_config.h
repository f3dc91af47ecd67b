// SGD-SaI scales (Xu et al. 2024, "No More Adam"): per-tensor g-SNR = ||g|| / (std(g) + eps) of the
// gradient the official optimizer's first step sees (batch rows [0, B)), or averaged over batches;
// the per-tensor step size is lr * gsnr.
#pragma once
#include "config_file.h"

namespace bs {

// gsnr[i] per parameter (table order); `batches` = how many batches were averaged (1 = official).
json sgd_sai_config(const ParamTable& table, const ModelInfo& info, const std::vector<double>& gsnr, int64_t batches,
                    int64_t batch_size, double eps);
std::vector<double> sgd_sai_from_json(const json& j, const ParamTable& table, const std::string& path);

}  // namespace bs
