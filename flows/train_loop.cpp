// Training loop. Batch i depends only on (seed, i) and the checkpoint holds parameters, optimizer
// state and the step, so a resumed run continues exactly where an uninterrupted one would be.
#include "train_loop.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <utility>

#include "checkpoint.h"
#include "emit_configs.h"
#include "profile.h"
#include "models/hf_checkpoint.h"
#include "blockwise_lr.h"
#include "errors.h"
#include "finite_check.h"
#include "h5io.h"
#include "json_file.h"
#include "batch_loss.h"
#include "out_dir.h"
#include "output_set.h"
#include "progress.h"
#include "provenance.h"
#include "optimizer_setup.h"
#include "slice_lr.h"
#include "stop_signals.h"
#include "zero_optimizer.h"

namespace bs {

std::string check_and_clip_grads(const Network& net, double max_norm) {
  const auto named = net.named_parameters();
  std::vector<torch::Tensor> grads;
  for (const auto& [name, p] : named) grads.push_back(p.grad());
  const GradientScan scan = scan_gradients(grads);
  if (scan.first_nonfinite >= 0) return named[static_cast<size_t>(scan.first_nonfinite)].first;
  if (max_norm > 0) scale_gradients(grads, clip_coefficient(grads, scan.norm, max_norm));
  return "";
}

namespace {
double validation_loss(Run& s, int64_t max_batches) {
  const int64_t n = std::min(max_batches, s.data->n_val_batches());
  if (n <= 0) return std::nan("");
  torch::NoGradGuard g;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += batch_loss(*s.net, s.val_batch(i), s.loss, s.data_name).item<double>();
  return dist::all_reduce_mean(sum / static_cast<double>(n));  // each rank saw an equal share of every batch
}

void write_final_params(const std::string& path, const Network& net, const std::string& model, OutputSet& set) {
  H5Output out(path);
  for (const auto& [name, t] : net.named_parameters()) out.write(name, t);
  out.provenance();
  out.attribute("model", model);
  out.commit(&set);
}

// The optimizer's inputs from the model and --config, with the training options it needs.
OptimizerSetup load_train_configs(const Run& s, const TrainOptions& t) {
  std::vector<ConfigSource> sources;
  for (const auto& path : t.configs) sources.push_back({path, std::nullopt});
  OptimizerSetup c = optimizer_setup(t.optimizer, s.net->named_parameters(), s.net->info(), sources);
  c.inputs.clip = t.clip;
  c.inputs.projection = t.projection;
  c.inputs.projection.seed = s.seed;
  c.inputs.frugal = t.frugal;
  c.inputs.no_decay = t.no_decay;
  c.inputs.frugal.update_gap = t.projection.update_gap;
  c.inputs.frugal.seed = s.seed;
  return c;
}

// One schedule per parameter: the base schedule, or with blockwise_lr.json each group's
// max lr = lr * multiplier and warmup = warmup * stretch, all decaying to the base floor (the
// Sharpness Disparity code's get_lr).
struct ParamSchedules {
  std::vector<Schedule> tensor;  // per parameter
  SliceSchedules slices;         // fused tensors whose slices have their own groups
};

ParamSchedules param_schedules(const std::optional<BlockwiseLr>& blockwise, size_t n_params, const Schedule& base) {
  ParamSchedules out;
  out.tensor.assign(n_params, base);
  if (blockwise) {
    const BlockwiseLr& bw = *blockwise;
    auto scaled = [&](double multiplier, double stretch) {
      Schedule g = base;
      g.lr = base.lr * multiplier;
      g.warmup = static_cast<int64_t>(std::llround(static_cast<double>(base.warmup) * stretch));
      g.min_lr = base.lr * base.min_lr_ratio;
      return g;
    };
    for (size_t i = 0; i < n_params; ++i) {
      out.tensor[i] = scaled(bw.multiplier[i], bw.warmup_stretch[i]);
      for (const auto& sl : bw.slices[i])
        out.slices.add(i, sl.dim, sl.begin, sl.length, scaled(sl.multiplier, sl.warmup_stretch));
    }
  }
  return out;
}

// The profile --derive-at runs: `profile`'s defaults but one eigenvalue to 1e-4, no density, no block
// lambda_max (the multipliers need only the block traces).
ProfileOptions derive_profile_options(const DeriveOptions& d) {
  ProfileOptions p;
  p.topk = 1;
  p.tol = 1e-4;
  p.density_runs = 0;
  p.block_eigs = BlockEigs::None;
  p.batches = d.batches;
  p.probes = d.probes;
  return p;
}

// DIR/derived/blockwise_lr.json as a --config: the one reading both the deriving and a resumed run use.
BlockwiseLr derived_blockwise(const Run& s, const std::string& out) {
  const std::string path = out + "/derived/blockwise_lr.json";
  const ParamTable table(s.net->named_parameters());
  return blockwise_lr_from_json(read_config(path, "blockwise_lr"), table, path);
}

// Profiles the current parameters and writes DIR/derived/ as `blocksharp profile` writes its folder.
void derive_configs(Run& s, const std::string& out, const DeriveOptions& d, int64_t step) {
  const ProfileOptions po = derive_profile_options(d);
  s.net->set_train(false);  // as profile measures: eval mode
  const Profile prof = run_profile(s.context(), po);
  s.net->set_train(true);
  const std::string dir = out + "/derived";
  prepare_out_dir(dir);
  EmitOptions e;
  e.lr_policy = d.policy;
  write_profile_set(dir, s, prof, po, e);
  std::printf("derived at step %lld: %s/blockwise_lr.json (%s); training on with its multipliers\n",
              static_cast<long long>(step), dir.c_str(), to_string(d.policy.kind));
}

}  // namespace

TrainResult train(Run& s, const std::string& out, const TrainOptions& t) {
  if (t.steps <= 0) throw UserError(param("steps") + " must be positive");
  if (t.grad_clip < 0 || !std::isfinite(t.grad_clip)) throw UserError(param("grad_clip") + " must be >= 0");
  const std::pair<const char*, int64_t> counts[] = {
      {"eval_every", t.eval_every}, {"eval_batches", t.eval_batches},         {"checkpoint_every", t.checkpoint_every},
      {"stop_at", t.stop_at},       {"dist_check_every", t.dist_check_every}, {"trace_every", t.trace.every}};
  for (const auto& [name, v] : counts)
    if (v < 0) throw UserError(param(name) + " must be >= 0, got " + std::to_string(v));
  validate(t.schedule);
  if (!t.export_hf.empty() && s.net->info().family != "gpt2" && s.net->info().family != "llama")
    throw UserError(param("export_hf") + ": model '" + s.net->info().name + "' is not a gpt2 or llama architecture");
  if (!t.export_hf.empty() && dist::is_main()) ensure_writable_dir(t.export_hf, param("export_hf"));  // before step 1
  auto params = s.net->parameters();
  Schedule base = t.schedule;
  base.lr = t.optim.lr;
  base.total = t.steps;
  TrainResult r;
  r.final_train_loss = NAN;                // until a step succeeds
  if (t.resume && !s.params_from.empty())  // the CLI refuses this before the session; the library too
    throw UserError(param("resume") + " continues from the checkpoint's parameters; " + param("params") +
                    " would be ignored (give one of them)");
  const OptimizerSetup configs = load_train_configs(s, t);
  ParamSchedules all_scheds = param_schedules(configs.blockwise, configs.inputs.params.size(), base);
  if (t.derive.at < 0 || (t.derive.at > 0 && t.derive.at >= t.steps))
    throw UserError(param("derive_at") + " must be in [1, " + param("steps") + ")");
  if (t.derive.at > 0) {
    if (configs.blockwise)
      throw UserError(param("derive_at") + " derives blockwise_lr.json itself; drop the blockwise_lr " +
                      param("config") + " (or " + param("derive_at") + ")");
    if (dist::active()) throw UserError(param("derive_at") + " is not supported with data parallelism yet");
    if (t.derive.batches < 1 || t.derive.probes < 1)
      throw UserError(param("derive_batches") + " and " + param("derive_probes") + " must be >= 1");
  }
  const std::vector<Schedule>& scheds = all_scheds.tensor;
  if (t.zero1 && !dist::active())
    throw UserError(param("zero1") + " needs data parallelism (WORLD_SIZE > 1: torchrun or blocksharp launch)");
  auto opt =
      t.zero1 ? make_zero1(t.optimizer, configs.inputs, t.optim) : make_optimizer(t.optimizer, configs.inputs, t.optim);
  if (t.trace.preconditioned && t.trace.every == 0)
    throw UserError(param("trace_preconditioned") + " needs " + param("trace_every") + " K");
  if (t.trace.preconditioned && !opt->step_sizes())
    throw UserError(param("trace_preconditioned") + ": optimizer " + opt->name() +
                    " has no diagonal preconditioner to measure (adamw, adam-mini and sgd-sai have)");
  if (dist::is_main()) prepare_out_dir(out);

  const std::string ckpt = out + "/checkpoint.h5";
  int64_t start = 0;
  if (t.resume) {
    const std::string summary = out + "/train_summary.json", final_params = out + "/final_params.h5";
    const Checkpoint c = load_checkpoint(ckpt, *s.net, *opt, t.steps);
    start = c.step;
    if (t.stop_at > 0 && t.stop_at <= start)
      throw UserError(param("stop_at") + " " + std::to_string(t.stop_at) + " is at or below the checkpoint's step " +
                      std::to_string(start));
    if (start == t.steps && OutputSet::complete(out, "train")) {
      std::printf("already finished: %lld steps (%s, %s); nothing changed\n", static_cast<long long>(t.steps),
                  summary.c_str(), final_params.c_str());
      r.steps_done = t.steps;
      return r;
    }
    r.final_train_loss = c.train_loss;
    std::printf("resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(start));
  }
  const int64_t end = t.stop_at > 0 ? std::min(t.steps, t.stop_at) : t.steps;
  // A run resumed past --derive-at trains with what it derived then (its output set must be complete).
  if (t.derive.at > 0 && start > t.derive.at)
    all_scheds = param_schedules(derived_blockwise(s, out), configs.inputs.params.size(), base);

  std::unique_ptr<Tracer> tracer;
  std::unique_ptr<TraceFile> trace_file;
  if (t.trace.every > 0) {
    tracer = std::make_unique<Tracer>(s.context(), *s.data, t.trace);
    if (t.resume && h5_has_dataset(ckpt, "tracer/warm"))
      tracer->set_warm_start(read_h5_dataset(ckpt, "tracer/warm", param("resume") + " checkpoint"));
    std::vector<std::string> names;  // measured blocks: tensors, and fused tensors' q/k/v slices
    const ParamTable table(s.net->named_parameters());
    for (const auto& b : table.blocks()) names.push_back(b.name);
    if (dist::is_main())
      trace_file = std::make_unique<TraceFile>(out + "/trace.h5", t.resume ? start : -1, names, t.trace.curvature,
                                               t.trace.preconditioned);
  }
  const ParamTable flat_table(s.net->named_parameters());
  auto flat_params = [&] {
    std::vector<torch::Tensor> d;
    for (auto& p : params) d.push_back(p.detach());
    return flat_table.flatten(d).clone();
  };

  s.net->set_train(true);
  const auto t0 = std::chrono::steady_clock::now();
  Progress bar("train", end);
  double ema = std::nan("");
  stop_signals::Scope signals(/*second_ends_process=*/true);  // read at each step boundary
  // --on-nonfinite skip: every skipped step is said (the first 10, then every 100th), and a run whose
  // last tenth was skipped throughout stops: it is not training any more.
  int64_t skipped_in_a_row = 0;
  const int64_t give_up_after = std::max<int64_t>(3, (t.steps + 9) / 10);  // a tenth, and never a lone step
  for (int64_t step = start; step < end; ++step) {
    if (t.derive.at > 0 && step == t.derive.at) {
      derive_configs(s, out, t.derive, step);
      all_scheds = param_schedules(derived_blockwise(s, out), configs.inputs.params.size(), base);
    }
    std::vector<double> lrs(scheds.size());
    for (size_t i = 0; i < scheds.size(); ++i) lrs[i] = scheds[i].lr_at(step);
    all_scheds.slices.set_tensor_lrs(step, lrs);  // a fused tensor runs at its fastest slice's lr
    opt->set_lrs(lrs);
    const double lr = base.lr_at(step);
    // One step; a non-finite loss or gradient skips it (counted) or aborts. Evaluation and
    // checkpoints below happen either way.
    auto apply_step = [&]() -> bool {
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
      auto loss = batch_loss(*s.net, s.train_batch(step), s.loss, s.data_name);
      const double lv = dist::all_reduce_mean(loss.item<double>());  // every rank takes the same decision
      if (!std::isfinite(lv)) {
        if (t.on_nonfinite == OnNonfinite::Abort)
          throw UserError("non-finite training loss at step " + std::to_string(step) + " (batch " +
                          std::to_string(step) + " of " + param("data") + " '" + s.data_name + "')");
        return false;
      }
      loss.backward();
      if (dist::active()) {  // DDP-style: bucketed all-reduce of the gradients (their mean over ranks)
        std::vector<torch::Tensor> grads;
        for (auto& p : params) grads.push_back(p.grad());
        dist::all_reduce_mean_buckets_(grads);
      }
      if (const std::string bad = check_and_clip_grads(*s.net, t.grad_clip); !bad.empty()) {
        if (t.on_nonfinite == OnNonfinite::Abort)
          throw UserError("non-finite gradient of parameter '" + bad + "' at step " + std::to_string(step));
        return false;
      }
      all_scheds.slices.before_step(params);
      opt->step();
      all_scheds.slices.after_step(params, step, lrs);
      if (t.dist_check_every > 0 && (step + 1) % t.dist_check_every == 0) dist::check_identical(params, "parameters");
      r.final_train_loss = lv;
      ema = std::isnan(ema) ? lv : 0.95 * ema + 0.05 * lv;
      return true;
    };
    const bool traced = tracer && (step + 1) % t.trace.every == 0;
    const torch::Tensor before = traced ? flat_params() : torch::Tensor();
    if (!apply_step()) {
      ++r.skipped_steps;
      ++skipped_in_a_row;
      if (r.skipped_steps <= 10 || r.skipped_steps % 100 == 0) {
        bar.finish();
        warn("step " + std::to_string(step + 1) + " skipped: non-finite loss or gradient (" +
             std::to_string(r.skipped_steps) + " skipped so far)");
      }
      if (skipped_in_a_row >= give_up_after)
        throw UserError("the last " + std::to_string(skipped_in_a_row) +
                        " steps were all skipped (non-finite loss or gradient, " + std::to_string(r.skipped_steps) +
                        " in all): the run diverged; lower " + param("lr") + " or use " + param("grad_clip"));
    } else {
      skipped_in_a_row = 0;
    }
    if (traced) {
      bar.finish();
      Preconditioning pre;  // the live optimizer's step sizes, after this step's update
      if (t.trace.preconditioned) {
        const auto sizes = opt->step_sizes();
        if (sizes && !sizes->per_tensor.empty()) pre = {torch::cat(sizes->per_tensor), sizes->threshold};
      }
      const TraceRecord rec = tracer->measure(step + 1, r.final_train_loss, lr, flat_params() - before,
                                              t.trace.preconditioned ? &pre : nullptr);
      if (trace_file) trace_file->append(rec);
    }
    char status[96];
    std::snprintf(status, sizeof status, "loss %.4f lr %.2e", ema, lr);
    bar.update(step + 1, status);
    const int64_t done = step + 1;
    if (t.eval_every > 0 && done % t.eval_every == 0 && done < t.steps) {
      s.net->set_train(false);
      const double vl = validation_loss(s, t.eval_batches);
      s.net->set_train(true);
      bar.finish();
      if (std::isnan(vl))  // no validation split (an .h5 file): no validation loss to show
        std::printf("step %6lld  train_loss %.4f  lr %.3e\n", static_cast<long long>(done), ema, lr);
      else
        std::printf("step %6lld  train_loss %.4f  val_loss %.4f  lr %.3e\n", static_cast<long long>(done), ema, vl, lr);
      std::fflush(stdout);
    }
    if ((t.checkpoint_every > 0 && done % t.checkpoint_every == 0) || done == end)
      if (t.checkpoint_every > 0 || t.stop_at > 0)
        save_checkpoint(ckpt, done, *s.net, *opt, r.final_train_loss, tracer ? tracer->warm_start() : torch::Tensor());
    // Every rank stops at the same boundary when any of them was signalled.
    // A signal stops the run at the next boundary, with a checkpoint; a second one ends it at once.
    int sig = signals.pending();
    if (dist::active() && dist::all_reduce_mean(static_cast<double>(sig)) > 0 && sig == 0) sig = SIGTERM;
    if (sig != 0 && done < end) {
      bar.finish();
      save_checkpoint(ckpt, done, *s.net, *opt, r.final_train_loss, tracer ? tracer->warm_start() : torch::Tensor());
      std::printf("interrupted at step %lld; continue with %s\n", static_cast<long long>(done),
                  spelled(param("resume")).c_str());
      std::fflush(stdout);
      throw ExitCode{128 + sig};
    }
  }
  bar.finish();
  s.net->set_train(false);
  r.steps_done = end;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (end < t.steps) {
    std::printf("stopped at step %lld of %lld (%s); continue with %s\n", static_cast<long long>(end),
                static_cast<long long>(t.steps), spelled(param("stop_at")).c_str(), spelled(param("resume")).c_str());
    return r;
  }
  r.final_val_loss = validation_loss(s, t.eval_batches);
  const double entropy = s.data->unigram_entropy();
  OutputSet final_set(out, "train");  // final_params.h5 and train_summary.json appear together
  write_final_params(out + "/final_params.h5", *s.net, s.model, final_set);
  if (!t.export_hf.empty() && dist::is_main()) export_hf(*s.net, t.export_hf);
  // State bytes of every rank (ZeRO-1: each holds its share) and the payload each rank communicated.
  auto per_rank = torch::zeros({dist::world_size()}, torch::kInt64);
  per_rank[dist::rank()] = opt->state_bytes();
  dist::all_reduce_sum_(per_rank);
  std::vector<int64_t> state_per_rank(per_rank.data_ptr<int64_t>(), per_rank.data_ptr<int64_t>() + per_rank.numel());
  nlohmann::json summary = {
      {"steps", t.steps},
      {"final_train_loss", r.final_train_loss},
      {"final_val_loss", std::isnan(r.final_val_loss) ? nlohmann::json() : nlohmann::json(r.final_val_loss)},
      {"unigram_entropy_nats", std::isnan(entropy) ? nlohmann::json() : nlohmann::json(entropy)},
      {"seconds", r.seconds},
      {"optimizer", t.optimizer},
      {"skipped_steps", r.skipped_steps},
      {"optimizer_state_bytes", opt->state_bytes()},
      {"world_size", dist::world_size()},
      {"threads", torch::get_num_threads()},
      {"zero1", t.zero1},
      {"optimizer_state_bytes_per_rank", state_per_rank},
      {"bytes_communicated_per_rank", dist::bytes_communicated()},
      {"model", s.model},
      {"data", s.data->describe()},
      {"set_id", final_set.id()}};
  for (const auto& [key, value] : provenance()) summary[key] = value;
  final_set.write_text(out + "/train_summary.json", summary.dump(2) + "\n");
  final_set.commit();
  std::printf("done: %lld steps in %.1f s  final train_loss %.4f", static_cast<long long>(t.steps), r.seconds,
              r.final_train_loss);
  if (r.skipped_steps > 0)
    std::printf(" (the last finite one; %lld steps skipped)", static_cast<long long>(r.skipped_steps));
  if (!std::isnan(r.final_val_loss)) std::printf("  val_loss %.4f", r.final_val_loss);
  if (!std::isnan(entropy)) std::printf("  (unigram entropy %.4f nats)", entropy);
  if (dist::active()) {
    std::printf("\n%d ranks%s: optimizer state bytes per rank", dist::world_size(), t.zero1 ? " (ZeRO-1)" : "");
    for (int64_t b : state_per_rank) std::printf(" %lld", static_cast<long long>(b));
    std::printf(", %.3g MB handed to collectives per rank", static_cast<double>(dist::bytes_communicated()) / 1e6);
  }
  std::printf("\nwrote %s/final_params.h5\n", out.c_str());
  return r;
}

}  // namespace bs
