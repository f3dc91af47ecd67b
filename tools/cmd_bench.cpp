// `blocksharp bench hvp`: cost of curvature queries as ratios measured in one process: a product over
// a gradient, Lanczos products over PyHessian power-iteration products (same start, accuracy
// against a tight Lanczos reference), all-block Hutchinson traces over the global trace alone, and
// the GGN / Fisher products over the Hessian's (graphs built once, as the estimators use them).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>
#include <nlohmann/json.hpp>

#include "gemm.h"
#include "bench_timing.h"
#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "memory.h"
#include "models/model_zoo.h"
#include "hutchinson.h"
#include "progress.h"
#include "spectral.h"

namespace bs {

namespace {

struct BenchOptions {
  std::vector<std::string> models = {"gpt2-tiny", "gpt2-small-cpu"};
  int64_t batch_size = 4;
  int64_t seq_len = 0;  // 0: the preset's context
  std::string tokenizer = "byte";
  int64_t repeats = 9;
  int64_t probes = 10;
  double power_tol = 1e-3;
  uint64_t seed = 0;
  int threads = 0;
  std::vector<std::string> parts = {"cost", "eigen", "trace", "curvatures"};
};

bool wants(const BenchOptions& o, const char* part) {
  return std::find(o.parts.begin(), o.parts.end(), part) != o.parts.end();
}

double max_rel_err(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() < ref.size()) return INFINITY;
  double e = 0;
  // Largest-magnitude pairs may come in either order of sign: compare sorted by value.
  auto g = std::vector<double>(got.begin(), got.begin() + ref.size()), r = ref;
  std::sort(g.begin(), g.end());
  std::sort(r.begin(), r.end());
  const double scale = std::max(std::abs(r.front()), std::abs(r.back()));
  for (size_t i = 0; i < r.size(); ++i) e = std::max(e, std::abs(g[i] - r[i]) / scale);
  return e;
}

// One bench_* per part; each gets the model's operator and its fixed batch.
struct BenchModel {
  Session s;  // s.opt: the model's options
  Batch batch;
  std::vector<torch::Tensor> params;
  std::unique_ptr<HvpOperator> H;
};

// A gradient and a product alternate, so both medians see the same machine (a shared one drifts).
// Where oneDNN runs the matrix products, each repeat also times both on LibTorch's own (its BLAS):
// the baseline, in the same process.
nlohmann::json bench_cost(BenchModel& m, const BenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto v = gaussian(m.H->size(), rng, m.H->dtype());
  auto gradient = [&] {
    auto loss = batch_loss(*m.s.net, m.batch, m.s.loss, m.s.opt.data);
    auto g = torch::autograd::grad({loss}, m.params);
  };
  auto product = [&] { m.H->apply(v); };
  std::vector<gemm::Backend> backends = {gemm::backend()};
  if (backends[0] == gemm::Backend::OneDnn) backends.push_back(gemm::Backend::LibTorch);
  struct Times {
    std::vector<double> gradient, product, ratio;
  };
  std::vector<Times> times(backends.size());
  for (auto b : backends) {
    gemm::ScopedBackend scope(b);
    gradient();
    product();  // warm-up of both
  }
  Progress bar(m.s.opt.model + ": gradient/product repeats", o.repeats);
  for (int64_t r = 0; r < o.repeats; ++r) {
    for (size_t i = 0; i < backends.size(); ++i) {
      gemm::ScopedBackend scope(backends[i]);
      times[i].gradient.push_back(median_seconds(1, gradient));
      times[i].product.push_back(median_seconds(1, product));
      times[i].ratio.push_back(times[i].product.back() / times[i].gradient.back());
    }
    bar.update(r + 1);
  }
  auto figures = [](const Times& t) {
    const double t_grad = median(t.gradient), t_hvp = median(t.product);
    return nlohmann::json{{"grad_seconds", t_grad},
                          {"hvp_seconds", t_hvp},
                          {"hvp_over_grad", t_hvp / t_grad},
                          {"hvp_over_grad_each_repeat", t.ratio}};
  };
  auto out = figures(times[0]);
  if (backends.size() == 2) {
    out["libtorch_gemm"] = figures(times[1]);
    out["speedup_over_libtorch_gemm"] = {{"gradient", median(times[1].gradient) / median(times[0].gradient)},
                                         {"product", median(times[1].product) / median(times[0].product)}};
  }
  return out;
}

nlohmann::json bench_eigen(BenchModel& m, const BenchOptions& o) {
  HvpOperator& H = *m.H;
  const int64_t n = H.size();
  Progress bar(m.s.opt.model + ": eigensolver products", 0);
  int64_t calls = 0;
  const LinearOp op = [&](const torch::Tensor& v) {
    bar.update(++calls);
    return H.apply(v);
  };
  std::mt19937_64 rng(o.seed);
  gaussian(n, rng, H.dtype());  // the cost part's vector: the start is the stream's second draw
  auto start = gaussian(n, rng, torch::kFloat64);
  nlohmann::json eig;
  EigOptions ref_opt;
  ref_opt.k = 5;
  ref_opt.tol = 1e-10;
  ref_opt.ncv = 40;
  ref_opt.start = start;
  ref_opt.which = EigWhich::LM;  // power iteration converges to the largest magnitudes: compare like with like
  const auto ref = lanczos_eigs(op, n, ref_opt);
  for (int64_t k : {1, 5}) {
    EigOptions lo;
    lo.k = k;
    lo.tol = o.power_tol;
    lo.start = start;
    lo.which = EigWhich::LM;
    const auto lz = lanczos_eigs(op, n, lo);  // profile's basis: max(2k+1, 20) vectors
    const auto pw = power_eigs(op, n, lo);
    std::vector<double> ref_k(ref.values.begin(), ref.values.begin() + k);
    const double e_lz = max_rel_err(lz.values, ref_k), e_pw = max_rel_err(pw.values, ref_k);
    // Equal or better accuracy: the cheapest Lanczos run (profile's basis or the smallest, 2k+1, at
    // Spectra tolerances 1e-3 .. 1e-1) whose error is at most power iteration's.
    int64_t best = e_lz <= e_pw ? lz.n_products : std::numeric_limits<int64_t>::max();
    double best_err = e_lz, best_tol = lo.tol;
    int64_t best_ncv = std::min(n, std::max<int64_t>(2 * k + 1, 20));
    for (int64_t ncv : {2 * k + 1, std::max<int64_t>(2 * k + 1, 20)})
      for (double tol : {1e-3, 1e-2, 1e-1}) {
        EigOptions e = lo;
        e.ncv = ncv;
        e.tol = tol;
        const auto r = lanczos_eigs(op, n, e);
        const double err = max_rel_err(r.values, ref_k);
        if (err <= e_pw && r.n_products < best) best = r.n_products, best_err = err, best_tol = tol, best_ncv = ncv;
      }
    eig["top" + std::to_string(k)] = {{"lanczos_products", lz.n_products},
                                      {"lanczos_max_rel_err", e_lz},
                                      {"power_products", pw.n_products},
                                      {"power_max_rel_err", e_pw},
                                      {"equal_accuracy_lanczos_products", best},
                                      {"equal_accuracy_lanczos_max_rel_err", best_err},
                                      {"equal_accuracy_lanczos_tol", best_tol},
                                      {"equal_accuracy_lanczos_ncv", best_ncv},
                                      {"lanczos_over_power", static_cast<double>(best) / pw.n_products}};
  }
  // Top 5 to a stated accuracy: --eig-accuracy 1e-6 (tolerance from the bound residual^2/gap) against
  // a fixed residual tolerance of 1e-6 and profile's default 1e-10, errors against the reference.
  {
    std::vector<double> ref5(ref.values.begin(), ref.values.begin() + 5);
    nlohmann::json acc;
    for (const auto& [name, tol, accuracy] : std::vector<std::tuple<std::string, double, double>>{
             {"eig_accuracy_1e-6", 0, 1e-6}, {"tol_1e-6", 1e-6, 0}, {"tol_1e-10", 1e-10, 0}}) {
      EigOptions e;
      e.k = 5;
      e.which = EigWhich::LM;
      e.start = start;
      e.tol = tol;
      e.accuracy = accuracy;
      const auto r = lanczos_eigs(op, n, e);
      acc[name] = {{"products", r.n_products}, {"max_rel_err", max_rel_err(r.values, ref5)}};
    }
    eig["top5_to_accuracy"] = acc;
  }
  return {{"eigen", eig}, {"reference_top5", ref.values}};
}

nlohmann::json bench_trace(BenchModel& m, const BenchOptions& o) {
  HvpOperator& H = *m.H;
  ParamTable single({{"all", torch::zeros({H.size()})}});
  const double t_blocks = median_seconds(1, [&] { hutchinson(H.as_op(), H.table(), o.probes, o.seed, H.dtype()); });
  const double t_global = median_seconds(1, [&] { hutchinson(H.as_op(), single, o.probes, o.seed, H.dtype()); });
  return {{"trace_probes", o.probes},
          {"trace_global_seconds", t_global},
          {"trace_all_blocks_seconds", t_blocks},
          {"all_blocks_over_global", t_blocks / t_global}};
}

// Each curvature's product against the Hessian's, alternating so that both see the same machine;
// the operators' graphs are built before timing (the estimators reuse them).
nlohmann::json bench_curvatures(BenchModel& m, const BenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto v = gaussian(m.H->size(), rng, m.H->dtype());
  nlohmann::json out;
  for (const auto& [word, kind] : curvature_words()) {
    if (kind == Curvature::Hessian) continue;
    HvpOperator C(*m.s.net, {m.batch}, m.s.loss, m.s.opt.data, {kind, o.seed});
    C.apply(v);
    m.H->apply(v);  // warm-up of both
    std::vector<double> tc, th, ratio;
    Progress bar(m.s.opt.model + ": " + word + "/Hessian product repeats", o.repeats);
    for (int64_t r = 0; r < o.repeats; ++r) {
      th.push_back(median_seconds(1, [&] { m.H->apply(v); }));
      tc.push_back(median_seconds(1, [&] { C.apply(v); }));
      ratio.push_back(tc.back() / th.back());
      bar.update(r + 1);
    }
    out[word] = {{"product_seconds", median(tc)},
                 {"hessian_product_seconds", median(th)},
                 {"products_per_second_over_hessian", median(th) / median(tc)},
                 {"seconds_over_hessian_each_repeat", ratio}};
  }
  return {{"curvatures", out}};
}

nlohmann::json bench_model(const std::string& model, const BenchOptions& o) {
  CommonOptions c;
  c.model = model;
  c.batch_size = o.batch_size;
  c.seq_len = o.seq_len;
  c.tokenizer = o.tokenizer;
  c.seed = o.seed;
  c.threads = o.threads;
  BenchModel m;
  m.s = open_session(c);
  m.batch = m.s.train_batch(0);
  m.params = m.s.net->parameters();
  m.H = std::make_unique<HvpOperator>(*m.s.net, std::vector<Batch>{m.batch}, m.s.loss, m.s.opt.data);
  nlohmann::json out = {{"parameters", m.H->size()}, {"batch", {m.batch.inputs.size(0), m.batch.inputs.size(1)}}};
  if (wants(o, "cost")) out.update(bench_cost(m, o));
  if (wants(o, "eigen")) out.update(bench_eigen(m, o));
  if (wants(o, "trace")) out.update(bench_trace(m, o));
  if (wants(o, "curvatures")) out.update(bench_curvatures(m, o));
  out["peak_resident_bytes_so_far"] = peak_resident_bytes();  // the process's peak (VmHWM) after this model
  return out;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "benchmarks; each prints one JSON object");
  bench->require_subcommand(1);
  auto* hvp = bench->add_subcommand("hvp", "Hessian-vector product cost, Lanczos vs power iteration, block traces");
  auto o = std::make_shared<BenchOptions>();
  hvp->add_option("--models", o->models, "built-in models to measure")->delimiter(',')->capture_default_str();
  hvp->add_option("--batch-size", o->batch_size, "sequences per batch")->capture_default_str();
  hvp->add_option("--seq-len", o->seq_len, "tokens per sequence (0: each preset's context)")->capture_default_str();
  hvp->add_option("--tokenizer", o->tokenizer, "byte or gpt2 (the presets' vocabulary follows)")->capture_default_str();
  hvp->add_option("--repeats", o->repeats, "timing repeats (median)")->capture_default_str();
  hvp->add_option("--probes", o->probes, "Hutchinson probes for the trace timing")->capture_default_str();
  hvp->add_option("--power-tol", o->power_tol, "tolerance of both eigensolvers (PyHessian's default 1e-3)")
      ->capture_default_str();
  hvp->add_option("--seed", o->seed, "seed")->capture_default_str();
  hvp->add_option("--parts", o->parts,
                  "what to measure: cost (product over gradient), eigen (Lanczos vs power), trace, curvatures (GGN "
                  "and Fisher products over the Hessian's)")
      ->delimiter(',')
      ->check(CLI::IsMember({"cost", "eigen", "trace", "curvatures"}))
      ->capture_default_str();
  hvp->add_option("--threads", o->threads, "intra-op threads (0: LibTorch default)")->capture_default_str();
  register_bench_optim(*bench);
  register_bench_dist(*bench);
  register_bench_train(*bench);
  hvp->callback([o] {
    // Every bad value named before the first model is built (--repeats 0 used to crash on an empty median).
    for (const auto& m : o->models)
      if (!is_preset(m))  // a TorchScript model's data and sizes (profile's --data, --dim) are not the bench's
        throw UserError("--models: '" + m + "' is not a built-in model (" + preset_list() + ")" +
                        (is_torchscript_path(m) ? "; bench hvp measures the built-in models only" : ""));
    require_counts({{"--batch-size", o->batch_size}, {"--repeats", o->repeats}, {"--probes", o->probes}});
    require_non_negative("--seq-len", o->seq_len, "each preset's context");
    require_positive("--power-tol", o->power_tol);
    require_non_negative("--threads", o->threads, "LibTorch default");
    nlohmann::json out = {
        {"bench", "hvp"}, {"gemm", gemm::describe(gemm::backend())}, {"blas_core", gemm::blas_core()}};
    for (const auto& m : o->models) out["models"][m] = bench_model(m, *o);
    out["threads"] = torch::get_num_threads();  // as the models' sessions set them
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace bs
