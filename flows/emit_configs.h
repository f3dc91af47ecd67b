// Turns a Profile into the three configs written next to profile.h5: adam_mini.json (rules or
// measured from structure evidence), blockwise_lr.json and sgd_sai.json.
#pragma once
#include "blockwise_lr.h"
#include "output_set.h"
#include "profile.h"
#include "run.h"

namespace bs {

// Where adam_mini.json's partition comes from: the official name rules, the measured Hessian structure
// per kind, or the rules with fused q/k/v weights cut per slice.
enum class AdamMiniMode { Rules, Measured, Slices };
const char* to_string(AdamMiniMode m);  // "rules", "measured", "slices" (adam_mini.json's mode)
inline const Words<AdamMiniMode>& adam_mini_mode_words() {
  static const Words<AdamMiniMode> w{
      {"rules", AdamMiniMode::Rules}, {"measured", AdamMiniMode::Measured}, {"slices", AdamMiniMode::Slices}};
  return w;
}

struct EmitOptions {
  AdamMiniMode adam_mini = AdamMiniMode::Rules;
  double structure_threshold = 0.9;
  int64_t structure_max_dense = 4096, structure_probes = 10;
  LrPolicy lr_policy;
  std::vector<std::string> group_patterns;
  int64_t gsnr_batches = 1;
};

// Rejects bad options before any measurement runs.
void validate(const EmitOptions& o);
// The checks that need the model, run after the session opens and before any product: --adam-mini
// slices needs the attention sizes (--dim, --n-heads) of a TorchScript model with fused q/k/v.
void validate(const EmitOptions& o, Run& s);
// Writes DIR/adam_mini.json, blockwise_lr.json and sgd_sai.json into `set` (each with its id).
void emit_configs(Run& s, const Profile& p, const EmitOptions& o, const std::string& dir, OutputSet& set);
// DIR/profile.h5 and the three configs as one output set, renamed together: what `blocksharp profile`
// writes to --out, train --derive-at to DIR/derived and the Python module's write_configs.
void write_profile_set(const std::string& dir, Run& s, const Profile& p, const ProfileOptions& po,
                       const EmitOptions& o);

}  // namespace bs
