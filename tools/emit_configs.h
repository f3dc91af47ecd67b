// Turns a Profile into the three configs written next to profile.h5: adam_mini.json (rules or
// measured from structure evidence), blockwise_lr.json and sgd_sai.json.
#pragma once
#include "blockwise_lr.h"
#include "output_set.h"
#include "profile.h"

namespace bs {

struct EmitOptions {
  std::string adam_mini = "rules";  // rules | measured | slices
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
void validate(const EmitOptions& o, Session& s);
// Writes DIR/adam_mini.json, blockwise_lr.json and sgd_sai.json into `set` (each with its id).
void emit_configs(Session& s, const Profile& p, const EmitOptions& o, const std::string& dir, OutputSet& set);

}  // namespace bs
