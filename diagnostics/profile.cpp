// The profile flow: batches -> HvpOperator -> top-k (Lanczos or power) -> Hutchinson block traces ->
// block / kind lambda_max -> SLQ density -> g-SNR and Gauss-Newton diagonal -> Profile.
#include "profile.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "batch_loss.h"
#include "distributed.h"
#include "errors.h"
#include "h5io.h"
#include "memory.h"
#include "progress.h"

namespace bs {

std::vector<double> gsnr_over_batches(const Context& c, int64_t batches) {
  if (batches < 1) throw UserError(param("gsnr_batches") + " must be at least 1");
  auto params = c.net->parameters();
  std::vector<double> out(params.size(), 0.0);
  for (int64_t b = 0; b < batches; ++b) {
    auto loss = batch_loss(*c.net, c.train_batch(b), c.loss, c.data);
    auto grads = torch::autograd::grad({loss}, params, {}, false, false, true);
    dist::all_reduce_mean_buckets_(grads);  // the whole batch's gradient, as the official first step sees it
    for (size_t i = 0; i < params.size(); ++i)
      out[i] += gsnr(grads[i].defined() ? grads[i] : torch::zeros_like(params[i])) / static_cast<double>(batches);
  }
  return out;
}

namespace {

// Sophia's Gauss-Newton-Bartlett estimate of diag(GN): N * g_hat^2 with labels sampled from the model;
// its mean over each ParamTable block.
std::vector<double> gn_diag_avg(const Context& c, const Batch& batch, const ParamTable& table, int64_t samples,
                                uint64_t seed) {
  std::vector<double> out(table.blocks().size(), NAN);
  if (c.loss != LossKind::CrossEntropy || samples <= 0) return out;
  auto params = c.net->parameters();
  auto gen = at::detail::createCPUGenerator(seed + static_cast<uint64_t>(dist::rank()));
  std::vector<torch::Tensor> acc(params.size());
  for (int64_t k = 0; k < samples; ++k) {
    auto logits = c.net->forward(batch.inputs);
    const int64_t C = logits.size(-1);
    auto flat = logits.reshape({-1, C});
    torch::Tensor sampled;
    {
      torch::NoGradGuard g;
      sampled = torch::multinomial(torch::softmax(flat.to(torch::kFloat64), -1), 1, true, gen).reshape({-1});
    }
    auto loss = torch::nll_loss(torch::log_softmax(flat, -1), sampled);
    auto grads = torch::autograd::grad({loss}, params, {}, false, false, true);
    dist::all_reduce_mean_buckets_(grads);
    const double N = static_cast<double>(flat.size(0) * dist::world_size());
    for (size_t i = 0; i < params.size(); ++i) {
      auto sq = grads[i].defined() ? (N * grads[i].to(torch::kFloat64).pow(2))
                                   : torch::zeros_like(params[i], torch::kFloat64);
      acc[i] = acc[i].defined() ? acc[i] + sq : sq;
    }
  }
  for (size_t b = 0; b < out.size(); ++b) {
    const auto& blk = table.blocks()[b];
    const auto a = acc[blk.entry].reshape({-1});
    out[b] = (blk.slice < 0 ? a : a.index_select(0, table.block_index(b))).mean().item<double>() /
             static_cast<double>(samples);
  }
  return out;
}

// What the solvers will hold beyond the model and its graphs (which exist by now, so the machine's
// available memory already excludes them): the Lanczos basis (ncv float64 vectors), the SLQ basis when
// reorthogonalising (steps vectors), and about 8 float64 work vectors (gradient, products, conversions).
// Too little memory first shrinks the basis (more restarts, same answer), then drops SLQ's
// reorthogonalisation (Ghorbani et al. 2019 run SLQ without it), and refuses only when neither fits.
struct MemoryPlan {
  int64_t ncv = 0;  // 0: lanczos_eigs' default
  bool reorth = true;
};

MemoryPlan plan_memory(int64_t n, const ProfileOptions& opt) {
  MemoryPlan plan;
  plan.reorth = opt.reorth;
  const double vec = 8.0 * static_cast<double>(n), work = 8 * vec;
  const int64_t avail = available_memory_bytes();
  if (avail < 0) return plan;  // unknown (not Linux): trust the user
  const double budget = 0.85 * static_cast<double>(avail);
  if (opt.method == EigMethod::Lanczos) {
    const int64_t ncv = default_ncv(n, opt.topk);
    const int64_t fit = static_cast<int64_t>((budget - work) / vec);
    if (ncv > fit) {
      if (fit < opt.topk + 2)
        throw UserError("profile: " + std::to_string(n) + " parameters need about " +
                        format_bytes(work + vec * (opt.topk + 2)) + " for the eigensolver (at least " + param("topk") +
                        " + 2 = " + std::to_string(opt.topk + 2) + " float64 vectors of " + format_bytes(vec) +
                        ", plus work vectors) but " + format_bytes(avail) + " is available; use a smaller " +
                        param("topk") + ", " + param("batch_size") + " or model");
      plan.ncv = fit;
      std::fprintf(stderr, "blocksharp: note: eigensolver basis cut from %lld to %lld vectors to fit %s of memory\n",
                   static_cast<long long>(ncv), static_cast<long long>(fit), format_bytes(avail).c_str());
    }
  }
  if (opt.density_runs > 0 && plan.reorth && work + vec * static_cast<double>(opt.density_steps) > budget) {
    plan.reorth = false;
    std::fprintf(stderr,
                 "blocksharp: note: density without reorthogonalisation (%lld basis vectors need %s, %s available)\n",
                 static_cast<long long>(opt.density_steps),
                 format_bytes(vec * static_cast<double>(opt.density_steps)).c_str(), format_bytes(avail).c_str());
  }
  if (work > budget)
    throw UserError("profile: " + std::to_string(n) + " parameters need about " + format_bytes(work) +
                    " of float64 work vectors but " + format_bytes(avail) + " is available");
  return plan;
}

}  // namespace

const char* to_string(EigMethod m) { return m == EigMethod::Power ? "power" : "lanczos"; }
const char* to_string(BlockEigs b) { return b == BlockEigs::None ? "none" : b == BlockEigs::Kinds ? "kinds" : "all"; }
const char* to_string(TraceEstimator t) { return t == TraceEstimator::HutchPlusPlus ? "hutch++" : "hutchinson"; }

Profile run_profile(const Context& c, const ProfileOptions& opt) {
  if (opt.batches < 1) throw UserError(param("batches") + " must be at least 1");
  // Every option is checked here, before any product: nothing runs on options refused later.
  if (opt.topk < 1) throw UserError(param("topk") + " must be at least 1");
  if (opt.trace_estimator == TraceEstimator::HutchPlusPlus && opt.probes < 3)
    throw UserError(param("probes") + " " + std::to_string(opt.probes) + ": " + param("trace_estimator") +
                    " hutch++ needs at least 3");
  if (opt.probes < 2) throw UserError(param("probes") + " must be at least 2 (the standard error needs two samples)");
  if (opt.density_runs < 0) throw UserError(param("density_runs") + " must be >= 0");
  if (opt.density_runs > 0 && opt.density_steps < 2) throw UserError(param("density_steps") + " must be >= 2");
  if (!(opt.eig_tol() > 0)) throw UserError(param("tol") + " must be positive");
  if (opt.eig_accuracy) {
    if (!(*opt.eig_accuracy > 0 && *opt.eig_accuracy < 1))
      throw UserError(param("eig_accuracy") + " must be in (0, 1) (got " + std::to_string(*opt.eig_accuracy) + ")");
    if (opt.tol)
      throw UserError(param("eig_accuracy") + " and " + param("tol") + ": give one (the accuracy sets the tolerance)");
    if (opt.method != EigMethod::Lanczos)
      throw UserError(param("eig_accuracy") + " needs " + param("method") + " lanczos");
  }
  if (opt.gn_samples < 0) throw UserError(param("gn_samples") + " must be >= 0");
  if (opt.noise_batches < 0 || opt.noise_batches == 1)
    throw UserError(param("noise_batches") + " must be 0 (skip) or at least 2 (got " +
                    std::to_string(opt.noise_batches) + ")");
  {
    int64_t n = 0;
    for (const auto& [name, t] : c.net->named_parameters()) n += t.numel();
    if (opt.topk >= n)
      throw UserError(param("topk") + " " + std::to_string(opt.topk) +
                      " must be smaller than the number of parameters (" + std::to_string(n) + ")");
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Batch> batches;
  for (int64_t b = 0; b < opt.batches; ++b) batches.push_back(c.train_batch(b));
  HvpOperator H(*c.net, batches, c.loss, c.data, {opt.curvature, c.seed, opt.keep_graphs});
  const ParamTable& table = H.table();
  const int64_t n = H.size();
  const MemoryPlan plan = plan_memory(n, opt);
  Profile p;
  p.loss = H.loss();
  p.curvature = opt.curvature;

  // Global top-k.
  {
    EigOptions eo;
    eo.k = opt.topk;
    eo.which = opt.which;
    eo.seed = c.seed;
    eo.tol = opt.eig_tol();
    eo.accuracy = opt.eig_accuracy.value_or(0);
    eo.ncv = plan.ncv;
    Progress bar("eigenvalues (products)", 0);
    int64_t calls = 0;
    LinearOp op = [&](const torch::Tensor& v) {
      bar.update(++calls);
      return H.apply(v);
    };
    p.global = opt.method == EigMethod::Lanczos ? lanczos_eigs(op, n, eo) : power_eigs(op, n, eo);
    p.n_hvp_global = p.global.n_products;
  }

  // Traces (Hutchinson or Hutch++): global and every block from the same products.
  p.trace = opt.trace_estimator == TraceEstimator::HutchPlusPlus
                ? hutch_plus_plus(H.as_op(), table, opt.probes - opt.probes % 3, c.seed + 1, H.dtype())
                : hutchinson(H.as_op(), table, opt.probes, c.seed + 1, H.dtype());

  // Per-tensor statistics.
  const auto g0 = table.unflatten(H.first_batch_gradient());
  const auto gn = gn_diag_avg(c, batches.front(), table, opt.gn_samples, c.seed + 2);
  GradientNoise noise;
  if (opt.noise_batches > 0) {
    noise = gradient_noise(c, table, c.train_batch, opt.noise_batches);
    p.noise = noise.global;
    p.noise_batches = noise.batches;
    p.noise_rows = noise.rows;
  }
  const auto& blocks = table.blocks();
  const double block_tol = std::max(opt.tol.value_or(1e-10), 1e-8);  // blocks always use Lanczos
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& blk = blocks[i];
    BlockStats b;
    b.name = blk.name;
    b.tensor = table.at(blk.entry).name;
    b.kind = blk.kind;
    b.numel = blk.numel;
    b.trace = p.trace.block_trace[i];
    b.trace_stderr = p.trace.block_stderr[i];
    b.avg_sharpness = b.trace / static_cast<double>(blk.numel);
    const auto g = g0[blk.entry].reshape({-1});
    b.gsnr = gsnr(blk.slice < 0 ? g : g.index_select(0, table.block_index(i)));
    b.gn_diag_avg = gn[i];
    if (!noise.blocks.empty()) b.noise = noise.blocks[i];
    p.blocks.push_back(b);
  }
  if (opt.block_eigs == BlockEigs::All) {
    Progress bar("block eigs", static_cast<int64_t>(blocks.size()));
    for (size_t i = 0; i < blocks.size(); ++i) {
      p.blocks[i].lambda_max = block_lambda_max(H, {i}, block_tol, c.seed + 10 + i);
      bar.update(static_cast<int64_t>(i + 1));
    }
  }

  // Per kind: trace sums (independent estimates per block, so variances add), lambda_max of the
  // kind's diagonal block H_kk (a fused projection's q and k slices are QK, its v slice VO).
  std::map<BlockKind, std::vector<size_t>> members;
  for (size_t i = 0; i < blocks.size(); ++i) members[blocks[i].kind].push_back(i);
  Progress bar("kind eigs", static_cast<int64_t>(members.size()));
  int64_t done = 0;
  for (auto& [kind, idx] : members) {
    KindStats k;
    k.kind = kind;
    std::vector<size_t> tensors;
    double var = 0;
    for (size_t i : idx) {
      if (std::find(tensors.begin(), tensors.end(), blocks[i].entry) == tensors.end())
        tensors.push_back(blocks[i].entry);
      k.numel += blocks[i].numel;
      k.trace += p.blocks[i].trace;
      var += p.blocks[i].trace_stderr * p.blocks[i].trace_stderr;
    }
    k.n_tensors = static_cast<int64_t>(tensors.size());
    if (p.noise_batches > 0) {  // sums of the blocks' per-row covariance traces and unbiased |G|^2
      double tr = 0, gsq = 0;
      for (size_t i : idx) tr += p.blocks[i].noise.tr_sigma, gsq += p.blocks[i].noise.g_sq;
      const double K = static_cast<double>(p.noise_batches), b = static_cast<double>(p.noise_rows);
      k.noise = noise_scale(tr / b, gsq + tr / b / K, p.noise_batches, p.noise_rows);
    }
    k.trace_stderr = std::sqrt(var);
    k.avg_sharpness = k.trace / static_cast<double>(k.numel);
    if (opt.block_eigs != BlockEigs::None)
      k.lambda_max = block_lambda_max(H, idx, block_tol, c.seed + 100 + static_cast<uint64_t>(kind));
    p.kinds.push_back(k);
    bar.update(++done);
  }
  bar.finish();

  // Spectral density.
  if (opt.density_runs > 0)
    p.density = slq_density(H.as_op(), n, opt.density_runs, opt.density_steps, plan.reorth, c.seed + 3, H.dtype());
  p.density_reorth = plan.reorth;
  p.n_hvp_total = H.n_hvp();
  p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

void write_profile_h5(const std::string& path, const Profile& p, const Context& c, const ProfileOptions& opt,
                      OutputSet* set) {
  H5Output out(path);
  out.write("/global/eigenvalues", p.global.values);
  out.write("/global/residuals", p.global.residuals);
  std::vector<int64_t> conv(p.global.converged.begin(), p.global.converged.end());
  out.write("/global/converged", conv);
  out.write("/global/n_hvp", p.n_hvp_global);
  if (!p.global.error_bounds.empty()) out.write("/global/error_bounds", p.global.error_bounds);
  out.write("/global/n_hvp_total", p.n_hvp_total);
  out.write("/global/trace", p.trace.trace);
  out.write("/global/trace_stderr", p.trace.std_error);
  out.write("/global/loss", p.loss);
  int64_t total = 0;
  for (const auto& b : p.blocks) total += b.numel;
  out.write("/global/numel", total);
  // What PyTorch's named_parameters() leaves out: later names of shared tensors, and frozen tensors.
  const ModelInfo& info = c.net->info();
  std::vector<std::string> alias, alias_of;
  for (const auto& [a, of] : info.aliases) alias.push_back(a), alias_of.push_back(of);
  out.write("/model/aliases", alias);
  out.write("/model/alias_of", alias_of);
  out.write("/model/frozen", info.frozen);
  using B = BlockStats;
  out.column("/blocks/name", p.blocks, [](const B& b) { return b.name; });
  out.column("/blocks/tensor", p.blocks, [](const B& b) { return b.tensor; });  // a fused q/k/v weight has three
  out.column("/blocks/kind", p.blocks, [](const B& b) { return to_string(b.kind); });
  out.column("/blocks/numel", p.blocks, [](const B& b) { return b.numel; });
  out.column("/blocks/trace", p.blocks, [](const B& b) { return b.trace; });
  out.column("/blocks/trace_stderr", p.blocks, [](const B& b) { return b.trace_stderr; });
  out.column("/blocks/avg_sharpness", p.blocks, [](const B& b) { return b.avg_sharpness; });
  out.column("/blocks/lambda_max", p.blocks, [](const B& b) { return b.lambda_max; });
  out.column("/blocks/gsnr", p.blocks, [](const B& b) { return b.gsnr; });
  out.column("/blocks/gn_diag_avg", p.blocks, [](const B& b) { return b.gn_diag_avg; });
  out.column("/blocks/noise_scale", p.blocks, [](const B& b) { return b.noise.b_simple; });
  out.column("/blocks/noise_tr_sigma", p.blocks, [](const B& b) { return b.noise.tr_sigma; });
  out.column("/blocks/noise_g_sq", p.blocks, [](const B& b) { return b.noise.g_sq; });
  using K = KindStats;
  out.column("/kinds/name", p.kinds, [](const K& k) { return to_string(k.kind); });
  out.column("/kinds/numel", p.kinds, [](const K& k) { return k.numel; });
  out.column("/kinds/trace", p.kinds, [](const K& k) { return k.trace; });
  out.column("/kinds/trace_stderr", p.kinds, [](const K& k) { return k.trace_stderr; });
  out.column("/kinds/avg_sharpness", p.kinds, [](const K& k) { return k.avg_sharpness; });
  out.column("/kinds/lambda_max", p.kinds, [](const K& k) { return k.lambda_max; });
  out.column("/kinds/noise_scale", p.kinds, [](const K& k) { return k.noise.b_simple; });
  out.write("/global/noise_scale", p.noise.b_simple);
  out.write("/global/noise_tr_sigma", p.noise.tr_sigma);
  out.write("/global/noise_g_sq", p.noise.g_sq);
  out.write("/global/noise_batches", p.noise_batches);
  out.write("/global/noise_rows", p.noise_rows);
  if (!p.density.grid.empty()) {
    out.write("/density/grid", p.density.grid);
    out.write("/density/values", p.density.values);
    out.write("/density/sigma", p.density.sigma);
    std::vector<double> nodes, weights;
    std::vector<int64_t> run_of;
    for (size_t r = 0; r < p.density.runs.size(); ++r)
      for (size_t i = 0; i < p.density.runs[r].nodes.size(); ++i) {
        nodes.push_back(p.density.runs[r].nodes[i]);
        weights.push_back(p.density.runs[r].weights[i]);
        run_of.push_back(static_cast<int64_t>(r));
      }
    out.write("/density/nodes", nodes);
    out.write("/density/weights", weights);
    out.write("/density/run", run_of);
  }
  out.provenance();
  out.attribute("seed", std::to_string(c.seed));
  out.attribute("trace_estimator", to_string(opt.trace_estimator));
  out.attribute("curvature", word_of(opt.curvature, curvature_words()));
  out.attribute("model", c.model);
  out.attribute("data", c.data_about);
  out.attribute("dtype", dtype_name(c.dtype));
  out.attribute("method", to_string(opt.method));
  out.attribute("density_reorth", p.density_reorth ? "true" : "false");
  out.attribute("which", to_string(opt.method == EigMethod::Power ? EigWhich::LM : opt.which));  // power: magnitude
  // The options the measurement ran with (the command line omits defaults, which depend on the model's size).
  char tol[32];
  std::snprintf(tol, sizeof tol, "%.17g", opt.eig_tol());
  out.attribute("topk", std::to_string(opt.topk));
  out.attribute("probes", std::to_string(opt.probes));
  out.attribute("tol", tol);
  if (opt.eig_accuracy) out.attribute("eig_accuracy", std::to_string(*opt.eig_accuracy));
  out.attribute("block_eigs", to_string(opt.block_eigs));
  out.attribute("density_runs", std::to_string(opt.density_runs));
  out.attribute("density_steps", std::to_string(opt.density_steps));
  out.commit(set);
}

static std::string num(double v, int width, int prec) {
  char buf[64];
  if (std::isnan(v))
    std::snprintf(buf, sizeof buf, "%*s", width, "-");
  else
    std::snprintf(buf, sizeof buf, "%*.*g", width, prec, v);
  return buf;
}

void print_profile(const Profile& p, const Context& c) {
  int64_t numel = 0;
  for (const auto& b : p.blocks) numel += b.numel;
  std::printf("model %s (%lld parameters) on %s, loss %.6f\n", c.model.c_str(), static_cast<long long>(numel),
              c.data_about.c_str(), p.loss);
  if (p.curvature != Curvature::Hessian)
    std::printf("curvature: %s (every eigenvalue, trace and sharpness below is of it, not the Hessian)\n",
                curvature_noun(p.curvature));
  for (const auto& [alias, of] : c.net->info().aliases)
    std::printf("shared: %s is %s (counted once)\n", alias.c_str(), of.c_str());
  if (!c.net->info().frozen.empty()) {
    std::printf("frozen (requires_grad false, left out):");
    for (const auto& f : c.net->info().frozen) std::printf(" %s", f.c_str());
    std::printf("\n");
  }
  std::printf("top-%zu eigenvalues (%s, %lld products):", p.global.values.size(), describe_status(p.global).c_str(),
              static_cast<long long>(p.n_hvp_global));
  for (double v : p.global.values) std::printf(" %.6g", v);
  std::printf(
      "\nmax residual ||Hv - lambda v||: %.3g\n",
      p.global.residuals.empty() ? NAN : *std::max_element(p.global.residuals.begin(), p.global.residuals.end()));
  if (!p.global.error_bounds.empty()) {
    double worst = 0;  // relative to each value
    for (size_t i = 0; i < p.global.error_bounds.size(); ++i)
      worst = std::max(worst, p.global.error_bounds[i] / std::abs(p.global.values[i]));
    std::printf("eigenvalue error bound (residual^2/gap, relative): %.3g\n", worst);
  }
  std::printf("trace %.6g +- %.3g (%s, %lld products)\n\n", p.trace.trace, p.trace.std_error, p.trace.estimator.c_str(),
              static_cast<long long>(p.trace.n_products));
  if (p.noise_batches > 0)
    std::printf("gradient noise scale B_simple %s rows (%lld batches of %lld rows)\n\n",
                num(p.noise.b_simple, 0, 4).c_str(), static_cast<long long>(p.noise_batches),
                static_cast<long long>(p.noise_rows));
  std::printf("%-6s %8s %10s %12s %12s %12s %10s\n", "kind", "tensors", "numel", "trace", "avg_sharp", "lambda_max",
              "B_noise");
  for (const auto& k : p.kinds)
    std::printf("%-6s %8lld %10lld %12.5g %12.5g %s %s\n", to_string(k.kind).c_str(),
                static_cast<long long>(k.n_tensors), static_cast<long long>(k.numel), k.trace, k.avg_sharpness,
                num(k.lambda_max, 12, 5).c_str(), num(k.noise.b_simple, 10, 4).c_str());
  std::printf("\n%-36s %-5s %9s %11s %11s %11s %10s %10s\n", "block", "kind", "numel", "trace", "avg_sharp",
              "lambda_max", "gsnr", "B_noise");
  for (const auto& b : p.blocks)
    std::printf("%-36s %-5s %9lld %11.4g %11.4g %s %10.4g %s\n", b.name.c_str(), to_string(b.kind).c_str(),
                static_cast<long long>(b.numel), b.trace, b.avg_sharpness, num(b.lambda_max, 11, 4).c_str(), b.gsnr,
                num(b.noise.b_simple, 10, 4).c_str());
  std::printf("\n%lld Hessian-vector products in %.1f s\n", static_cast<long long>(p.n_hvp_total), p.seconds);
}

}  // namespace bs
