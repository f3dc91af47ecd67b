// `blocksharp profile`: the main job. Measures the Hessian of the model on fixed batches and writes
// DIR/profile.h5 (paths in DESIGN.md); prints a per-kind and per-block table.
#include <cstdlib>

#include "cli_common.h"
#include "errors.h"
#include "memory_guard.h"
#include "commands.h"
#include "emit_configs.h"
#include "output_set.h"
#include "profile.h"

namespace bs {

namespace {

// From this many parameters on, a product costs seconds on a CPU and the small-model defaults (100
// probes, 3 SLQ runs, a Lanczos per kind, tol 1e-10) add up to hours: gpt2-124m needs ~750 products.
// BLOCKSHARP_LARGE_MODEL=N moves the threshold (tests use it on a tiny model).
int64_t large_model_params() {
  const char* v = std::getenv("BLOCKSHARP_LARGE_MODEL");
  if (!v || !*v) return 50'000'000;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  if (*end || n <= 0)
    throw UserError("BLOCKSHARP_LARGE_MODEL='" + std::string(v) + "': expected a positive parameter count");
  return n;
}

// The options the user did not give take cheaper values for a large model; stderr names each one, so
// the run says what it measured and how to ask for more. Values: no per-kind Lanczos (the dominant
// cost), one SLQ run, 30 probes (Hutchinson's stderr is in profile.h5) and Lanczos tol 1e-4 (a residual
// of 1e-4 |lambda| bounds the Ritz value's error by ~1e-8 relative for a gap of 10 %).
void large_model_defaults(const CLI::App* cmd, ProfileOptions& p, int64_t n_params) {
  if (n_params < large_model_params()) return;
  std::string changed;
  auto unset = [&](const char* flag) { return cmd->count(flag) == 0; };
  if (unset("--block-eigs")) p.block_eigs = BlockEigs::None, changed += " --block-eigs none";
  if (unset("--density-runs")) p.density_runs = 1, changed += " --density-runs 1";
  if (unset("--probes")) p.probes = 30, changed += " --probes 30";
  if (unset("--tol") && p.method == EigMethod::Lanczos) p.tol = 1e-4, changed += " --tol 1e-4";
  if (!changed.empty())
    std::fprintf(stderr, "blocksharp: note: %lld parameters: large-model defaults%s (give an option to choose it)\n",
                 static_cast<long long>(n_params), changed.c_str());
}

}  // namespace

void register_profile(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("profile", "Hessian eigenvalues, traces, density and per-block sharpness -> DIR/profile.h5");
  auto common = std::make_shared<CommonOptions>();
  auto p = std::make_shared<ProfileOptions>();
  add_common_options(cmd, *common);
  cmd->add_option("--topk", p->topk, "top eigenvalues of the Hessian")->capture_default_str();
  cmd->add_option("--probes", p->probes, "products for the traces (Hutch++: the largest multiple of 3 below)")
      ->capture_default_str();
  add_enum_option(cmd, "--trace-estimator", p->trace_estimator, trace_estimator_words(),
                  "hutchinson, or hutch++ (exact on a sketch of the dominant eigenspace: lower error when a few "
                  "eigenvalues dominate)");
  cmd->add_option("--batches", p->batches, "fixed batches the Hessian is averaged over")->capture_default_str();
  add_enum_option(cmd, "--method", p->method, eig_method_words(),
                  "lanczos (Spectra) or power (PyHessian's deflated power iteration)");
  add_enum_option(cmd, "--which", p->which, eig_which_words(),
                  "LA largest, SA smallest, LM largest-magnitude eigenvalues (Lanczos)");
  cmd->add_option_function<double>(
      "--tol", [p](double v) { p->tol = v; }, "eigensolver tolerance (default: Lanczos 1e-10, power iteration 1e-3)");
  cmd->add_option_function<double>(
      "--eig-accuracy", [p](double v) { p->eig_accuracy = v; },
      "wanted relative accuracy of the eigenvalues (Lanczos; sets the residual tolerance from the bound "
      "residual^2/gap instead of --tol)");
  add_enum_option(cmd, "--block-eigs", p->block_eigs, block_eigs_words(),
                  "lambda_max of diagonal blocks: none, kinds or all (every tensor)");
  cmd->add_option("--density-runs", p->density_runs, "SLQ runs for the spectral density (0 = skip)")
      ->capture_default_str();
  cmd->add_option("--density-steps", p->density_steps, "Lanczos steps per SLQ run")->capture_default_str();
  cmd->add_flag("!--no-reorth", p->reorth, "SLQ without full reorthogonalisation (less memory)");
  cmd->add_option("--gn-samples", p->gn_samples, "sampled-label gradients for the Gauss-Newton diagonal (ce only)")
      ->capture_default_str();
  add_enum_option(cmd, "--curvature", p->curvature, curvature_words(), kCurvatureHelp);
  cmd->add_option("--noise-batches", p->noise_batches,
                  "batch gradients for the gradient noise scale B_simple = tr(Sigma)/|G|^2 (0: skip)")
      ->capture_default_str();
  cmd->add_flag("!--recompute-graphs", p->keep_graphs, "hold one batch's graph at a time (less memory, slower)");
  auto e = std::make_shared<EmitOptions>();
  add_enum_option(cmd, "--adam-mini", e->adam_mini, adam_mini_mode_words(),
                  "adam_mini.json: rules (official v1.1.1), measured (structure evidence per kind) or slices (fused "
                  "q/k/v cut per slice)");
  cmd->add_option("--structure-threshold", e->structure_threshold, "measured Adam-mini: diagonal mass to hold")
      ->capture_default_str();
  add_enum_option(cmd, "--lr-policy", e->lr_policy.kind, lr_policy_words(),
                  "blockwise lr multipliers: paper or inverse-sharpness");
  cmd->add_option("--lr-exponent", e->lr_policy.exponent, "inverse-sharpness: (S_sharpest/S_group)^exponent")
      ->capture_default_str();
  cmd->add_option("--lr-min-multiplier", e->lr_policy.min_multiplier, "inverse-sharpness clamp")->capture_default_str();
  cmd->add_option("--lr-max-multiplier", e->lr_policy.max_multiplier, "inverse-sharpness clamp")->capture_default_str();
  cmd->add_option("--group-pattern", e->group_patterns, "KIND=substring: put matching parameters in a group");
  cmd->add_option("--gsnr-batches", e->gsnr_batches, "SGD-SaI g-SNR averaged over N batches (1 = official)")
      ->capture_default_str();
  cmd->callback([cmd, common, p, e] {
    validate(*e);
    prepare_out_dir(common->out);
    // A run that outgrows the memory ends with one line, not the OOM killer; where the products hold
    // every batch's graph at once, holding one at a time is the first way out.
    memory_guard::start(p->keep_graphs && p->batches > 1
                            ? param("recompute_graphs") + ", which holds one of the " + std::to_string(p->batches) +
                                  " batches' graphs at a time instead of all"
                            : Message());
    Session s = open_session(*common);
    validate(*e, s);  // before any product
    large_model_defaults(cmd, *p, ParamTable(s.net->named_parameters()).total_numel());
    const Context c = s.context();
    Profile prof = run_profile(c, *p);
    print_profile(prof, c);
    write_profile_set(common->out, s, prof, *p, *e);  // profile.h5 and the three configs appear together
    std::printf("wrote %s/profile.h5\n", common->out.c_str());
  });
}

}  // namespace bs
