// `blocksharp train`: trains a model with the chosen optimizer (see train_loop.h).
#include <cstdio>

#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "memory_guard.h"
#include "registry.h"
#include "train_loop.h"

namespace bs {

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train a model; writes DIR/final_params.h5 and checkpoints");
  auto common = std::make_shared<CommonOptions>();
  auto t = std::make_shared<TrainOptions>();
  add_common_options(cmd, *common);
  cmd->get_option("--threads")
      ->description(
          "intra-op threads (0: every core, shared among a host's ranks; OMP_NUM_THREADS, when set, decides instead)");
  std::string optimizers;  // the registry's names; --list-optimizers shows what each is
  for (const auto& e : optimizer_registry()) optimizers += (optimizers.empty() ? "" : ", ") + e.name;
  cmd->add_option("--optimizer", t->optimizer, optimizers + " (--list-optimizers: what each is)")
      ->capture_default_str();
  auto list = std::make_shared<bool>(false);
  cmd->add_flag("--list-optimizers", *list,
                "print the optimizers, the configs each takes and their defaults, and exit");
  cmd->add_option("--steps", t->steps, "optimizer steps")->capture_default_str();
  // Unset hyperparameters take the chosen optimizer's official defaults (default_options).
  auto given = std::make_shared<OptimizerOptions>();
  auto* o_lr = cmd->add_option("--lr", given->lr, "peak learning rate (default: the optimizer's, 1e-3; sgd-sai 1e-2)");
  auto* o_wd = cmd->add_option("--weight-decay", given->weight_decay,
                               "decoupled weight decay (default: adamw 0.01, adam-mini 0, sgd-sai 0.01)");
  auto* o_b1 = cmd->add_option("--beta1", given->beta1, "first-moment decay / sgd-sai momentum (0.9)");
  auto* o_b2 = cmd->add_option("--beta2", given->beta2, "second-moment decay (0.999)");
  auto* o_eps = cmd->add_option("--eps", given->eps, "epsilon (1e-8)");
  cmd->add_option("--warmup", t->schedule.warmup, "linear warmup steps")->capture_default_str();
  add_enum_option(cmd, "--schedule", t->schedule.kind,
                  {{"constant", ScheduleKind::Constant}, {"cosine", ScheduleKind::Cosine}}, "constant or cosine");
  cmd->add_option("--min-lr-ratio", t->schedule.min_lr_ratio, "cosine floor as a fraction of --lr")
      ->capture_default_str();
  cmd->add_option("--grad-clip", t->grad_clip, "max global gradient norm (0 = off)")->capture_default_str();
  cmd->add_option("--eval-every", t->eval_every, "validation every N steps (0: only at the end)")
      ->capture_default_str();
  cmd->add_option("--eval-batches", t->eval_batches, "validation batches per evaluation (0: no validation)")
      ->capture_default_str();
  cmd->add_option("--checkpoint-every", t->checkpoint_every, "write DIR/checkpoint.h5 every N steps (0 = off)")
      ->capture_default_str();
  cmd->add_option("--stop-at", t->stop_at, "stop after this step with a checkpoint, as if interrupted");
  cmd->add_option("--config", t->configs,
                  "configs from `profile`: blockwise_lr.json (adamw, adam-mini), adam_mini.json, sgd_sai.json");
  cmd->add_flag("--resume", t->resume, "continue from DIR/checkpoint.h5");
  cmd->add_option(
      "--export-hf", t->export_hf,
      "also write the final parameters as a Hugging Face checkpoint (config.json + model.safetensors) in DIR");
  cmd->add_option("--no-decay", t->no_decay,
                  "no weight decay for names containing these substrings (e.g. norm ln bias)")
      ->delimiter(',');
  cmd->add_option("--trace-every", t->trace.every,
                  "every K steps record sharpness on a fixed probe batch to DIR/trace.h5")
      ->capture_default_str();
  cmd->add_option("--trace-probes", t->trace.probes, "Hutchinson probes per trace record")->capture_default_str();
  cmd->add_option("--trace-batch-size", t->trace.batch_size, "rows of the fixed probe batch (0: a full batch)")
      ->capture_default_str();
  cmd->add_flag("--trace-block-eigs", t->trace.block_eigs, "also lambda_max of every tensor's block (slow)");
  add_enum_option(cmd, "--trace-curvature", t->trace.curvature, curvature_words(), kCurvatureHelp);
  cmd->add_flag("--trace-preconditioned", t->trace.preconditioned,
                "also lambda_max(P^-1 H) of the live optimizer's preconditioner and its edge-of-stability threshold "
                "(adamw, adam-mini, sgd-sai)");
  add_enum_option(cmd, "--on-nonfinite", t->on_nonfinite, {{"skip", OnNonfinite::Skip}, {"abort", OnNonfinite::Abort}},
                  "non-finite loss or gradient: skip the step (counted) or abort");
  cmd->add_flag("--zero1", t->zero1,
                "data parallel: each rank keeps the optimizer state of its share of the tensors (ZeRO-1)");
  cmd->add_option("--dist-check-every", t->dist_check_every,
                  "data parallel: verify parameters are identical on all ranks every N steps (0 = never)")
      ->capture_default_str();
  cmd->add_option_function<double>(
      "--clip-fraction", [t](double v) { t->clip.fraction = v; },
      "sgd-clip / adam-clip: fraction of coordinates clipped "
      "(default 0.1 / 0.5, the paper's)");
  cmd->add_option("--clip-scale", t->clip.threshold_scale, "sgd-clip / adam-clip: threshold scale")
      ->capture_default_str();
  cmd->add_option_function<int64_t>(
      "--rank", [t](int64_t v) { t->projection.rank = v; },
      "apollo / apollo-mini / galore rank (default 256 / 1 / 128)");
  cmd->add_option("--update-proj-gap", t->projection.update_gap, "projection refresh period")->capture_default_str();
  cmd->add_option_function<double>(
      "--proj-scale", [t](double v) { t->projection.scale = v; },
      "apollo scale (applied as sqrt; default 1, mini 128), galore scale (1)");
  cmd->add_flag("--scale-front", t->projection.scale_front, "apollo: scale before the norm-growth limiter");
  cmd->add_option("--derive-at", t->derive.at,
                  "at step N profile the run's own parameters, write DIR/derived/ and train on with the derived "
                  "blockwise multipliers (0 = off)")
      ->capture_default_str();
  cmd->add_option("--derive-batches", t->derive.batches, "--derive-at: training batches the profile averages over")
      ->capture_default_str();
  cmd->add_option("--derive-probes", t->derive.probes, "--derive-at: Hutchinson probes")->capture_default_str();
  add_enum_option(cmd, "--derive-lr-policy", t->derive.policy.kind, lr_policy_words(),
                  "--derive-at: blockwise multipliers from the paper's table or the measured sharpness");
  cmd->add_flag("--disable-nl", t->projection.disable_nl, "apollo: no norm-growth limiter");
  add_enum_option(cmd, "--frugal-selection", t->frugal.selection, frugal_selection_words(),
                  "frugal: randk, columns, rows or block");
  cmd->add_option("--density", t->frugal.density, "frugal: state-full fraction")->capture_default_str();
  cmd->add_option("--inactive-lr-scale", t->frugal.inactive_lr_scale, "frugal: signSGD lr scale (0.1 for fine-tuning)")
      ->capture_default_str();
  cmd->callback([common, t, given, o_lr, o_wd, o_b1, o_b2, o_eps, list] {
    if (*list) {
      std::fputs(optimizer_table_markdown().c_str(), stdout);
      return;
    }
    t->optim = default_options(t->optimizer);
    if (o_lr->count()) t->optim.lr = given->lr;
    if (o_wd->count()) t->optim.weight_decay = given->weight_decay;
    if (o_b1->count()) t->optim.beta1 = given->beta1;
    if (o_b2->count()) t->optim.beta2 = given->beta2;
    if (o_eps->count()) t->optim.eps = given->eps;
    if (t->resume && !common->params_file.empty())  // before the session loads --params
      throw UserError(
          "--resume continues from the checkpoint's parameters; --params would be ignored (give one of them)");
    if (common->threads == 0) common->threads = default_training_threads();
    memory_guard::start();  // a run that outgrows the memory ends with one line, not the OOM killer
    Session s = open_session(*common);
    train(s, s.opt.out, *t);
  });
}

}  // namespace bs
