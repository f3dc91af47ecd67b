// `blocksharp structure --param NAME`: the Hessian of one tensor (or a named set), dense when it has
// at most --max-dense entries, scored against candidate partitions; writes DIR/structure.h5.
#include <cstdio>

#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "h5io.h"
#include "progress.h"
#include "spectral.h"
#include "structure.h"

namespace bs {

namespace {

struct StructureOptions {
  std::vector<std::string> params;
  double threshold = 0.9;
  int64_t max_dense = 4096;
  int64_t per_pass = 1;
  int64_t probes = 30;
  int64_t batches = 1;
};

void run_structure(Session& s, const StructureOptions& o) {
  if (o.params.empty()) throw UserError("--param is required");
  if (!(o.threshold > 0 && o.threshold <= 1)) throw UserError("--threshold must be in (0, 1]");
  if (o.per_pass < 1) throw UserError("--per-pass must be at least 1");
  std::vector<Batch> batches;
  for (int64_t b = 0; b < o.batches; ++b) batches.push_back(s.train_batch(b));
  HvpOperator H(*s.net, batches, s.loss, s.opt.data);
  std::vector<size_t> idx;
  for (const auto& name : o.params) idx.push_back(H.table().index_of(name));
  const int64_t n = H.block_size(idx);
  std::vector<Candidate> cands;
  if (idx.size() == 1) {
    const auto& e = H.table().at(idx[0]);
    const auto& info = s.net->info();
    const bool attention = e.kind == BlockKind::QK || e.kind == BlockKind::VO;
    const int64_t heads = attention ? info.n_heads : 0;
    const int64_t head_rows = heads > 0 && info.dim > 0 ? info.dim / heads : 0;
    cands = candidate_partitions(e.shape, head_rows);
  } else {
    cands = candidate_partitions({n}, 0);  // whole and per-element
    Candidate per_tensor;
    per_tensor.name = "per-tensor";
    for (size_t k = 0; k < idx.size(); ++k)
      per_tensor.block_of.insert(per_tensor.block_of.end(), H.table().at(idx[k]).numel, static_cast<int64_t>(k));
    per_tensor.n_blocks = static_cast<int64_t>(idx.size());
    cands.insert(cands.begin() + 1, per_tensor);
  }
  const bool dense = n <= o.max_dense;
  torch::Tensor Hd;
  if (dense) {
    Progress bar("dense Hessian: products", n);
    const LinearOp columns = [&](const torch::Tensor& E) {
      auto Y = H.apply_block(idx, E);
      bar.update(H.n_hvp());
      return Y;
    };
    Hd = dense_matrix(columns, n, o.per_pass);
    bar.finish();
    score_dense(Hd, cands);
  } else {
    score_randomized(H.block_op(idx), n, o.probes, s.opt.seed, cands);
  }
  const Candidate& best = recommend(cands, o.threshold);

  H5Output out(s.opt.out + "/structure.h5");
  if (dense) out.write("/hessian", Hd);
  out.write("/param/names", o.params);
  std::vector<int64_t> shape = idx.size() == 1 ? H.table().at(idx[0]).shape : std::vector<int64_t>{n};
  out.write("/param/shape", shape);
  std::vector<std::string> names;
  std::vector<int64_t> nb;
  std::vector<double> fr, se;
  for (const auto& c : cands) {
    names.push_back(c.name);
    nb.push_back(c.n_blocks);
    fr.push_back(c.fraction);
    se.push_back(c.fraction_stderr);
    out.write("/partitions/block_of/" + c.name, c.block_of);
  }
  out.write("/partitions/name", names);
  out.write("/partitions/n_blocks", nb);
  out.write("/partitions/fraction", fr);
  out.write("/partitions/fraction_stderr", se);
  out.write("/recommended", std::vector<std::string>{best.name});
  out.write("/threshold", o.threshold);
  out.provenance();
  out.attribute("model", s.opt.model);
  out.attribute("method", dense ? "dense" : "randomized");
  out.commit();

  std::printf("Hessian of %s (%lld entries, %s, %lld products)\n",
              o.params.size() == 1 ? o.params[0].c_str() : "the set", static_cast<long long>(n),
              dense ? "dense" : "randomized estimate", static_cast<long long>(H.n_hvp()));
  std::printf("%-12s %9s %22s\n", "partition", "blocks", "mass in diagonal blocks");
  for (const auto& c : cands) {
    if (dense)
      std::printf("%-12s %9lld %22.4f\n", c.name.c_str(), static_cast<long long>(c.n_blocks), c.fraction);
    else
      std::printf("%-12s %9lld %14.4f +- %.4f\n", c.name.c_str(), static_cast<long long>(c.n_blocks), c.fraction,
                  c.fraction_stderr);
  }
  std::printf("recommended: %s (finest partition holding >= %.2f of the mass)\nwrote %s/structure.h5\n",
              best.name.c_str(), o.threshold, s.opt.out.c_str());
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
  cmd->callback([common, o] {
    prepare_out_dir(common->out);
    Session s = open_session(*common);
    if (s.net->info().family == "torchscript" && common->n_heads > 0 && common->dim == 0)
      throw UserError("--n-heads needs --dim for TorchScript models");
    run_structure(s, *o);
  });
}

}  // namespace bs
