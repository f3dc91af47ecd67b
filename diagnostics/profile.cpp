// The profile flow: batches -> HvpOperator -> top-k (Lanczos or power) -> Hutchinson block traces ->
// block / kind lambda_max -> SLQ density -> g-SNR and Gauss-Newton diagonal -> Profile.
#include "profile.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "errors.h"
#include "h5io.h"
#include "progress.h"

namespace bs {

double gsnr(const torch::Tensor& g, double eps) {
  const auto gd = g.to(torch::kFloat64).reshape({-1});
  double sd = gd.numel() > 1 ? gd.std(/*unbiased=*/true).item<double>() : 0.0;
  if (std::isnan(sd)) sd = 0.0;
  return gd.norm().item<double>() / (sd + eps);
}

std::vector<double> gsnr_over_batches(Session& s, int64_t batches) {
  if (batches < 1) throw UserError("--gsnr-batches must be at least 1");
  auto params = s.net->parameters();
  std::vector<double> out(params.size(), 0.0);
  for (int64_t b = 0; b < batches; ++b) {
    auto loss = batch_loss(*s.net, s.train_batch(b), s.loss, s.opt.data);
    auto grads = torch::autograd::grad({loss}, params, {}, false, false, true);
    dist::all_reduce_mean_buckets_(grads);  // the whole batch's gradient, as the official first step sees it
    for (size_t i = 0; i < params.size(); ++i)
      out[i] += gsnr(grads[i].defined() ? grads[i] : torch::zeros_like(params[i])) / static_cast<double>(batches);
  }
  return out;
}

namespace {

// Largest eigenvalue of a block: exact (dense) for small blocks, Lanczos otherwise.
double block_lambda_max(HvpOperator& H, const std::vector<size_t>& block, const ProfileOptions& opt, uint64_t seed) {
  const int64_t n = H.block_size(block);
  auto op = H.block_op(block);
  if (n <= 64) return dense_eigs(op, n).values.front();
  EigOptions eo;
  eo.k = 1;
  eo.tol = std::max(opt.tol, 1e-8);
  eo.seed = seed;
  auto r = lanczos_eigs(op, n, eo);
  return r.values.empty() ? NAN : r.values.front();
}

// Sophia's Gauss-Newton-Bartlett estimate of diag(GN): N * g_hat^2 with labels sampled from the model.
std::vector<double> gn_diag_avg(Session& s, const Batch& batch, const ParamTable& table, int64_t samples, uint64_t seed) {
  std::vector<double> out(table.size(), NAN);
  if (s.loss != LossKind::CrossEntropy || samples <= 0) return out;
  auto params = s.net->parameters();
  auto gen = at::detail::createCPUGenerator(seed + static_cast<uint64_t>(dist::rank()));
  std::vector<torch::Tensor> acc(params.size());
  for (int64_t k = 0; k < samples; ++k) {
    auto logits = s.net->forward(batch.inputs);
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
      auto sq = grads[i].defined() ? (N * grads[i].to(torch::kFloat64).pow(2)) : torch::zeros_like(params[i], torch::kFloat64);
      acc[i] = acc[i].defined() ? acc[i] + sq : sq;
    }
  }
  for (size_t i = 0; i < params.size(); ++i) out[i] = acc[i].mean().item<double>() / static_cast<double>(samples);
  return out;
}

}  // namespace

Profile run_profile(Session& s, const ProfileOptions& opt) {
  if (opt.method != "lanczos" && opt.method != "power") throw UserError("--method '" + opt.method + "': expected lanczos or power");
  if (opt.block_eigs != "none" && opt.block_eigs != "kinds" && opt.block_eigs != "all")
    throw UserError("--block-eigs '" + opt.block_eigs + "': expected none, kinds or all");
  if (opt.batches < 1) throw UserError("--batches must be at least 1");
  if (opt.trace_estimator != "hutchinson" && opt.trace_estimator != "hutch++")
    throw UserError("--trace-estimator '" + opt.trace_estimator + "': expected hutchinson or hutch++");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Batch> batches;
  for (int64_t b = 0; b < opt.batches; ++b) batches.push_back(s.train_batch(b));
  HvpOperator H(*s.net, batches, s.loss, s.opt.data, opt.keep_graphs);
  const ParamTable& table = H.table();
  const int64_t n = H.size();
  Profile p;
  p.loss = H.loss();

  // Global top-k.
  {
    EigOptions eo;
    eo.k = opt.topk;
    eo.which = opt.which;
    eo.seed = s.opt.seed;
    eo.tol = opt.method == "power" && opt.tol == 1e-10 ? 1e-3 : opt.tol;
    Progress bar("eigenvalues (products)", 0);
    int64_t calls = 0;
    LinearOp op = [&](const torch::Tensor& v) {
      bar.update(++calls);
      return H.apply(v);
    };
    p.global = opt.method == "lanczos" ? lanczos_eigs(op, n, eo) : power_eigs(op, n, eo);
    p.n_hvp_global = p.global.n_products;
  }

  // Traces (Hutchinson or Hutch++): global and every block from the same products.
  p.trace = opt.trace_estimator == "hutch++"
                ? hutch_plus_plus(H.as_op(), table, opt.probes - opt.probes % 3, s.opt.seed + 1, H.dtype())
                : hutchinson(H.as_op(), table, opt.probes, s.opt.seed + 1, H.dtype());

  // Per-tensor statistics.
  const auto g0 = table.unflatten(H.first_batch_gradient());
  const auto gn = gn_diag_avg(s, batches.front(), table, opt.gn_samples, s.opt.seed + 2);
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& e = table.at(i);
    BlockStats b;
    b.name = e.name;
    b.kind = e.kind;
    b.numel = e.numel;
    b.trace = p.trace.block_trace[i];
    b.trace_stderr = p.trace.block_stderr[i];
    b.avg_sharpness = b.trace / static_cast<double>(e.numel);
    b.gsnr = gsnr(g0[i]);
    b.gn_diag_avg = gn[i];
    p.blocks.push_back(b);
  }
  if (opt.block_eigs == "all") {
    Progress bar("block eigs", static_cast<int64_t>(table.size()));
    for (size_t i = 0; i < table.size(); ++i) {
      p.blocks[i].lambda_max = block_lambda_max(H, {i}, opt, s.opt.seed + 10 + i);
      bar.update(static_cast<int64_t>(i + 1));
    }
  }

  // Per kind: trace sums (independent estimates per tensor, so variances add), lambda_max of the
  // kind's diagonal block H_kk.
  std::map<BlockKind, std::vector<size_t>> members;
  for (size_t i = 0; i < table.size(); ++i) members[table.at(i).kind].push_back(i);
  Progress bar("kind eigs", static_cast<int64_t>(members.size()));
  int64_t done = 0;
  for (auto& [kind, idx] : members) {
    KindStats k;
    k.kind = kind;
    k.n_tensors = static_cast<int64_t>(idx.size());
    double var = 0;
    for (size_t i : idx) {
      k.numel += table.at(i).numel;
      k.trace += p.blocks[i].trace;
      var += p.blocks[i].trace_stderr * p.blocks[i].trace_stderr;
    }
    k.trace_stderr = std::sqrt(var);
    k.avg_sharpness = k.trace / static_cast<double>(k.numel);
    if (opt.block_eigs != "none") k.lambda_max = block_lambda_max(H, idx, opt, s.opt.seed + 100 + static_cast<uint64_t>(kind));
    p.kinds.push_back(k);
    bar.update(++done);
  }
  bar.finish();

  // Spectral density.
  if (opt.density_runs > 0)
    p.density = slq_density(H.as_op(), n, opt.density_runs, opt.density_steps, opt.reorth, s.opt.seed + 3, H.dtype());
  p.n_hvp_total = H.n_hvp();
  p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

void write_profile_h5(const std::string& path, const Profile& p, const Session& s, const ProfileOptions& opt) {
  H5Output out(path);
  out.write("/global/eigenvalues", p.global.values);
  out.write("/global/residuals", p.global.residuals);
  std::vector<int64_t> conv(p.global.converged.begin(), p.global.converged.end());
  out.write("/global/converged", conv);
  out.write("/global/n_hvp", p.n_hvp_global);
  out.write("/global/n_hvp_total", p.n_hvp_total);
  out.write("/global/trace", p.trace.trace);
  out.write("/global/trace_stderr", p.trace.stderr_);
  out.write("/global/loss", p.loss);
  int64_t total = 0;
  for (const auto& b : p.blocks) total += b.numel;
  out.write("/global/numel", total);
  std::vector<std::string> names, kinds;
  std::vector<int64_t> numel;
  std::vector<double> tr, tr_se, avg, lmax, gs, gn;
  for (const auto& b : p.blocks) {
    names.push_back(b.name);
    kinds.push_back(to_string(b.kind));
    numel.push_back(b.numel);
    tr.push_back(b.trace);
    tr_se.push_back(b.trace_stderr);
    avg.push_back(b.avg_sharpness);
    lmax.push_back(b.lambda_max);
    gs.push_back(b.gsnr);
    gn.push_back(b.gn_diag_avg);
  }
  out.write("/blocks/name", names);
  out.write("/blocks/kind", kinds);
  out.write("/blocks/numel", numel);
  out.write("/blocks/trace", tr);
  out.write("/blocks/trace_stderr", tr_se);
  out.write("/blocks/avg_sharpness", avg);
  out.write("/blocks/lambda_max", lmax);
  out.write("/blocks/gsnr", gs);
  out.write("/blocks/gn_diag_avg", gn);
  std::vector<std::string> kn;
  std::vector<int64_t> kn_numel;
  std::vector<double> k_tr, k_se, k_avg, k_lmax;
  for (const auto& k : p.kinds) {
    kn.push_back(to_string(k.kind));
    kn_numel.push_back(k.numel);
    k_tr.push_back(k.trace);
    k_se.push_back(k.trace_stderr);
    k_avg.push_back(k.avg_sharpness);
    k_lmax.push_back(k.lambda_max);
  }
  out.write("/kinds/name", kn);
  out.write("/kinds/numel", kn_numel);
  out.write("/kinds/trace", k_tr);
  out.write("/kinds/trace_stderr", k_se);
  out.write("/kinds/avg_sharpness", k_avg);
  out.write("/kinds/lambda_max", k_lmax);
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
  out.attribute("blocksharp_version", BLOCKSHARP_VERSION);
  out.attribute("command_line", command_line());
  out.attribute("seed", std::to_string(s.opt.seed));
  out.attribute("trace_estimator", opt.trace_estimator);
  out.attribute("model", s.opt.model);
  out.attribute("data", s.data->describe());
  out.attribute("dtype", s.opt.dtype);
  out.attribute("method", opt.method);
  out.attribute("which", opt.which);
  out.commit();
}

static std::string num(double v, int width, int prec) {
  char buf[64];
  if (std::isnan(v)) std::snprintf(buf, sizeof buf, "%*s", width, "-");
  else std::snprintf(buf, sizeof buf, "%*.*g", width, prec, v);
  return buf;
}

void print_profile(const Profile& p, const Session& s) {
  int64_t numel = 0;
  for (const auto& b : p.blocks) numel += b.numel;
  std::printf("model %s (%lld parameters) on %s, loss %.6f\n", s.opt.model.c_str(), static_cast<long long>(numel),
              s.data->describe().c_str(), p.loss);
  std::printf("top-%zu eigenvalues (%s, %lld products):", p.global.values.size(), p.global.status.c_str(),
              static_cast<long long>(p.n_hvp_global));
  for (double v : p.global.values) std::printf(" %.6g", v);
  std::printf("\nmax residual ||Hv - lambda v||: %.3g\n",
              p.global.residuals.empty() ? NAN : *std::max_element(p.global.residuals.begin(), p.global.residuals.end()));
  std::printf("trace %.6g +- %.3g (%s, %lld products)\n\n", p.trace.trace, p.trace.stderr_,
              p.trace.estimator.c_str(), static_cast<long long>(p.trace.n_products));
  std::printf("%-6s %8s %10s %12s %12s %12s\n", "kind", "tensors", "numel", "trace", "avg_sharp", "lambda_max");
  for (const auto& k : p.kinds)
    std::printf("%-6s %8lld %10lld %12.5g %12.5g %s\n", to_string(k.kind).c_str(), static_cast<long long>(k.n_tensors),
                static_cast<long long>(k.numel), k.trace, k.avg_sharpness, num(k.lambda_max, 12, 5).c_str());
  std::printf("\n%-36s %-5s %9s %11s %11s %11s %10s\n", "block", "kind", "numel", "trace", "avg_sharp", "lambda_max", "gsnr");
  for (const auto& b : p.blocks)
    std::printf("%-36s %-5s %9lld %11.4g %11.4g %s %10.4g\n", b.name.c_str(), to_string(b.kind).c_str(),
                static_cast<long long>(b.numel), b.trace, b.avg_sharpness, num(b.lambda_max, 11, 4).c_str(), b.gsnr);
  std::printf("\n%lld Hessian-vector products in %.1f s\n", static_cast<long long>(p.n_hvp_total), p.seconds);
}

}  // namespace bs
