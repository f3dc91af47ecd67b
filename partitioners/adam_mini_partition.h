// The Adam-mini partition (Zhang et al. 2024, ICLR 2025): `rules` reproduces the official v1.1.1 name
// rules exactly (ALGORITHMS.md 1.2); `measured` picks the granularity of each block kind from Hessian
// structure evidence and records where it disagrees with the rules.
#pragma once
#include <map>

#include "config_file.h"
#include "partition.h"

namespace bs {

// Official v1.1.1: bias -> per element; q/k -> per head (dim*dim/n_heads elements); embedding, output,
// value, attention-out and MLP -> per row; everything else -> whole. Weight decay off for names with
// "norm", "ln" or "bias".
Partition adam_mini_rules(const ParamTable& table, const ModelInfo& info);

// Structure evidence for one block kind: scored candidates on a sampled tensor.
struct KindEvidence {
  std::string sampled_param;
  std::vector<std::string> candidates;
  std::vector<int64_t> n_blocks;
  std::vector<double> fractions;
  std::string recommended;  // whole | per-head | per-row | per-column | per-element
  std::string method;       // dense | randomized
  double threshold = 0.9;
};

// Rules partition with each measured kind's tensors switched to the recommended granularity
// (per-column is recorded but not used: Adam-mini's blocks are contiguous rows).
Partition adam_mini_measured(const ParamTable& table, const ModelInfo& info,
                             const std::map<BlockKind, KindEvidence>& evidence, json& report);

// Rules partition, except that each fused q/k/v weight (c_attn, in_proj_weight, qkv_proj, Wqkv) is cut
// per slice: q and k per head, v per output unit, as the rules treat separate q_proj / k_proj / v_proj
// (Adam-mini issue #30). Needs the head count.
Partition adam_mini_slices(const ParamTable& table, const ModelInfo& info);

json adam_mini_to_json(const Partition& p, const ModelInfo& info, const std::string& mode, const json& evidence);
// Validates against the model (names, shapes, block sizes) and returns the Partition.
Partition adam_mini_from_json(const json& j, const ParamTable& table, const std::string& path);
int64_t head_numel(const ModelInfo& info);

}  // namespace bs
