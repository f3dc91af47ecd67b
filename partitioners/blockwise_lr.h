// Blockwise learning rates from the Sharpness Disparity principle (Wang et al., ICML 2025): one group
// per block kind (Emb, QK, VO, FFN, Norm, Head; biases join their module's group), the measured average
// sharpness Tr(H_bb)/numel of each group, and lr multipliers from a policy.
#pragma once
#include <map>

#include "config_file.h"
#include "words.h"

namespace bs {

// paper: the Sharpness Disparity table; inverse-sharpness: multipliers from measured group sharpness.
enum class LrPolicyKind { Paper, InverseSharpness };
const char* to_string(LrPolicyKind k);  // "paper", "inverse-sharpness" (the config's policy.name)
inline const Words<LrPolicyKind>& lr_policy_words() {
  static const Words<LrPolicyKind> w{{"paper", LrPolicyKind::Paper},
                                     {"inverse-sharpness", LrPolicyKind::InverseSharpness}};
  return w;
}

struct LrPolicy {
  LrPolicyKind kind = LrPolicyKind::Paper;
  // inverse-sharpness: (S_sharpest / S_group)^exponent. 1 (lr inversely proportional to sharpness, as the
  // stable step 2/lambda) lands near the paper's table on a GPT-2-like BPE model (docs/blockwise_calibration.md;
  // the least-squares exponent there is 1.15-1.2).
  double exponent = 1.0;
  double min_multiplier = 1.0, max_multiplier = 10.0;
};

// The paper's tuned table: Norm 1, VO 4, FFN 6, QK 8, Emb 10, Head 1 (Other 1).
double paper_multiplier(BlockKind group);

// Group of a parameter: user patterns ("KIND=substring") first, then the name rules with biases placed
// in their module's group.
BlockKind lr_group(const std::string& name, const std::vector<std::pair<BlockKind, std::string>>& patterns);
std::vector<std::pair<BlockKind, std::string>> parse_group_patterns(const std::vector<std::string>& specs);

// `block_trace` holds each measured block's Tr(H_bb) in table.blocks() order (NaN when not measured). A
// fused q/k/v weight's slices join their own groups ([q], [k] QK, [v] VO) unless a --group-pattern
// names the tensor: its params entry carries "slices" with each slice's group, and groups[].params
// lists the tensor once, under its first slice's group (PyTorch param groups cannot hold a slice).
// `block_trace_stderr` (same order; empty: unknown, taken as 0) decides which groups' sharpness is
// resolved: above its standard error. inverse-sharpness derives multipliers from resolved groups only;
// an unresolved group (negative or within one standard error of 0, as at initialisation where the
// Hessian is indefinite) keeps the paper's multiplier and is listed in policy.unresolved_groups; with
// fewer than two resolved groups no ratio exists and every group keeps it (policy.derived_groups empty).
json blockwise_lr_config(const ParamTable& table, const ModelInfo& info, const std::vector<double>& block_trace,
                         const LrPolicy& policy, const std::vector<std::pair<BlockKind, std::string>>& patterns,
                         const std::vector<double>& block_trace_stderr = {});

// A row (dim 0) or column (dim 1) range of one tensor with its own multiplier.
struct SliceLr {
  int64_t dim = 0, begin = 0, length = 0;
  double multiplier = 1, warmup_stretch = 1;
};

struct BlockwiseLr {
  std::vector<double> multiplier;      // per parameter, table order
  std::vector<double> warmup_stretch;  // per parameter
  std::vector<std::string> group;      // per parameter: its params entry's group (a fused tensor: its first slice's)
  std::vector<std::vector<SliceLr>> slices;  // per parameter; empty unless the tensor's slices differ
};
BlockwiseLr blockwise_lr_from_json(const json& j, const ParamTable& table, const std::string& path);

}  // namespace bs
