// The training loop: seeded batches, schedule, gradient clipping, periodic validation, atomic
// checkpoints every N steps and a bit-identical --resume, final parameters to HDF5.
#pragma once
#include <string>

#include "blockwise_lr.h"
#include "optimizer.h"
#include "schedule.h"
#include "tracer.h"
#include "run.h"

namespace bs {

// A non-finite loss or gradient: skip the step (counted, said) or abort naming the parameter.
enum class OnNonfinite { Skip, Abort };

// --derive-at N: at step N the run profiles its own parameters (the first `batches` training batches,
// per-block Hutchinson traces), writes DIR/derived/ (profile.h5, blockwise_lr.json, adam_mini.json,
// sgd_sai.json, one output set) and trains on from step N+1 with the derived blockwise multipliers:
// the same as `profile --params <step-N parameters> --topk 1 --tol 1e-4 --density-runs 0 --block-eigs
// none` with these options, then `train --resume --config derived/blockwise_lr.json`.
struct DeriveOptions {
  int64_t at = 0;  // 0: off
  int64_t batches = 1, probes = 20;
  LrPolicy policy = [] {
    LrPolicy p;
    p.kind = LrPolicyKind::InverseSharpness;
    return p;
  }();
};

struct TrainOptions {
  std::string optimizer = "adamw";
  OptimizerOptions optim;
  Schedule schedule;
  int64_t steps = 1000;
  double grad_clip = 1.0;  // max global grad norm; 0 = off
  int64_t eval_every = 0;  // 0: only at the end
  int64_t eval_batches = 20;
  int64_t checkpoint_every = 0;  // 0: no checkpoints
  int64_t stop_at = 0;           // stop after this many steps (checkpointed), as if interrupted; 0 = off
  bool resume = false;
  std::vector<std::string> configs;  // --config: blockwise_lr.json, adam_mini.json, sgd_sai.json
  ClipOptions clip;                  // sgd-clip, adam-clip
  ProjectionOptions projection;      // apollo, apollo-mini, galore (update_gap also frugal's)
  FrugalOptions frugal;
  std::vector<std::string> no_decay;  // name substrings excluded from weight decay
  TraceOptions trace;                 // --trace-every K: sharpness records to DIR/trace.h5
  OnNonfinite on_nonfinite = OnNonfinite::Skip;
  bool zero1 = false;            // data parallel: shard optimizer state by tensor across ranks
  int64_t dist_check_every = 1;  // data parallel: check parameters are identical on all ranks every N steps
  std::string export_hf;         // --export-hf DIR: final parameters as a Hugging Face checkpoint
  DeriveOptions derive;
};

struct TrainResult {
  int64_t steps_done = 0, skipped_steps = 0;
  double final_train_loss = 0, final_val_loss = 0, seconds = 0;
};

// Trains `s`'s network, writing checkpoints, trace.h5, final_params.h5 and train_summary.json to `out`.
TrainResult train(Run& s, const std::string& out, const TrainOptions& t);

// The step's one pass over the gradients (scan_gradients, src/finite_check.h): the name of the first
// parameter whose gradient holds a NaN or an infinity ("" if none); where there is none and max_norm >
// 0, the gradients are then clipped to that global norm as torch.nn.utils.clip_grad_norm_ clips them
// (the norm is summed in float64, so the coefficient can differ from LibTorch's in its last bit).
std::string check_and_clip_grads(const Network& net, double max_norm);

}  // namespace bs
