// `blocksharp structure --param NAME`: the Hessian of one tensor (or a named set), dense when it has
// at most --max-dense entries, scored against candidate partitions; writes DIR/structure.h5.
#include <cstdio>

#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "memory_guard.h"
#include "structure.h"

namespace bs {

namespace {

void print_structure(const StructureResult& r, const StructureOptions& o, const std::string& out) {
  const auto& cands = r.candidates;
  const bool dense = r.dense;
  const int64_t n = r.n;
  const Candidate& best = cands[r.best];
  std::printf("Hessian of %s (%lld entries, %s, %lld products)\n",
              o.params.size() == 1 ? o.params[0].c_str() : "the set", static_cast<long long>(n),
              dense ? "dense" : "randomized estimate", static_cast<long long>(r.n_hvp));
  std::printf("%-12s %9s %22s\n", "partition", "blocks", "mass in diagonal blocks");
  for (const auto& c : cands) {
    if (dense)
      std::printf("%-12s %9lld %22.4f\n", c.name.c_str(), static_cast<long long>(c.n_blocks), c.fraction);
    else
      std::printf("%-12s %9lld %14.4f +- %.4f\n", c.name.c_str(), static_cast<long long>(c.n_blocks), c.fraction,
                  c.fraction_stderr);
  }
  std::printf("recommended: %s (finest partition holding >= %.2f of the mass)\nwrote %s/structure.h5\n",
              best.name.c_str(), o.threshold, out.c_str());
}

}  // namespace

void register_structure(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("structure", "dense Hessian of one tensor and its best block partition -> DIR/structure.h5");
  auto common = std::make_shared<CommonOptions>();
  auto o = std::make_shared<StructureOptions>();
  add_common_options(cmd, *common);
  cmd->add_option("--param", o->params, "parameter name (repeat for a set)")->required();
  cmd->add_option("--threshold", o->threshold, "mass the recommended partition's diagonal blocks must hold")
      ->capture_default_str();
  cmd->add_option("--max-dense", o->max_dense, "largest tensor formed densely; above it a randomized estimate")
      ->capture_default_str();
  cmd->add_option("--per-pass", o->per_pass,
                  "basis vectors per pass through the graph (a vmap batch; memory grows with it, and on CPU one "
                  "at a time measured fastest)")
      ->capture_default_str();
  cmd->add_option("--probes", o->probes, "probes of the randomized estimate")->capture_default_str();
  cmd->add_option("--batches", o->batches, "fixed batches the Hessian is averaged over")->capture_default_str();
  add_enum_option(cmd, "--curvature", o->curvature, curvature_words(), kCurvatureHelp);
  cmd->callback([common, o] {
    prepare_out_dir(common->out);
    memory_guard::start();  // a run that outgrows the memory ends with one line, not the OOM killer
    Session s = open_session(*common);
    if (s.net->info().family == "torchscript" && common->n_heads > 0 && common->dim == 0)
      throw UserError("--n-heads needs --dim for TorchScript models");
    const StructureResult r = run_structure(s.context(), *o);
    write_structure_h5(common->out + "/structure.h5", r, s.context(), *o);
    print_structure(r, *o, common->out);
  });
}

}  // namespace bs
