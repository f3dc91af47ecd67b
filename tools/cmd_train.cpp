// `blocksharp train`: trains a model with the chosen optimizer (see train_loop.h).
#include "cli_common.h"
#include "commands.h"
#include "train_loop.h"

namespace bs {

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train a model; writes DIR/final_params.h5 and checkpoints");
  auto common = std::make_shared<CommonOptions>();
  auto t = std::make_shared<TrainOptions>();
  add_common_options(cmd, *common);
  cmd->add_option("--optimizer", t->optimizer, "adamw")->capture_default_str();
  cmd->add_option("--steps", t->steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--lr", t->optim.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", t->optim.weight_decay, "decoupled weight decay")->capture_default_str();
  cmd->add_option("--beta1", t->optim.beta1, "first-moment decay")->capture_default_str();
  cmd->add_option("--beta2", t->optim.beta2, "second-moment decay")->capture_default_str();
  cmd->add_option("--eps", t->optim.eps, "denominator epsilon")->capture_default_str();
  cmd->add_option("--warmup", t->schedule.warmup, "linear warmup steps")->capture_default_str();
  cmd->add_option("--schedule", t->schedule.kind, "constant or cosine")->capture_default_str();
  cmd->add_option("--min-lr-ratio", t->schedule.min_lr_ratio, "cosine floor as a fraction of --lr")
      ->capture_default_str();
  cmd->add_option("--grad-clip", t->grad_clip, "max global gradient norm (0 = off)")->capture_default_str();
  cmd->add_option("--eval-every", t->eval_every, "validation every N steps (0: only at the end)")
      ->capture_default_str();
  cmd->add_option("--eval-batches", t->eval_batches, "validation batches per evaluation")->capture_default_str();
  cmd->add_option("--checkpoint-every", t->checkpoint_every, "write DIR/checkpoint.pt every N steps (0 = off)")
      ->capture_default_str();
  cmd->add_option("--stop-at", t->stop_at, "stop after this step with a checkpoint, as if interrupted");
  cmd->add_option("--config", t->configs, "blockwise_lr.json from `profile` (per-group lr multipliers and warmup)");
  cmd->add_flag("--resume", t->resume, "continue from DIR/checkpoint.pt");
  cmd->callback([common, t] {
    Session s = open_session(*common);
    train(s, *t);
  });
}

}  // namespace bs
