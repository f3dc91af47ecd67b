// `blocksharp bench optim`: optimizer step cost on a GPT-2-like set of float32 tensors (>= 32M
// parameters), measured with Google Benchmark in one process: step time, bytes moved per step over the
// copy bandwidth measured in the same run, speedup over LibTorch's AdamW, state bytes over AdamW's.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "adam_mini_partition.h"
#include "commands.h"
#include "cpu_loop.h"
#include "optimizer.h"

namespace bs {

namespace {

struct OptimBenchOptions {
  int64_t layers = 8, dim = 512, vocab = 16384;
  double min_time = 0.5;
  int threads = 0;
};

// Captures each benchmark's real time per iteration (seconds).
class Collect : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs)
      if (r.iterations > 0)
        seconds[r.run_name.function_name] = r.real_accumulated_time / static_cast<double>(r.iterations);
  }
  std::map<std::string, double> seconds;
};

struct Model {
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
};

Model gpt2_like(const OptimBenchOptions& o) {
  Model m;
  auto add = [&](const std::string& n, std::vector<int64_t> s) {
    m.names.push_back(n);
    m.shapes.push_back(std::move(s));
  };
  add("wte.weight", {o.vocab, o.dim});
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    add(h + "ln_1.weight", {o.dim});
    add(h + "ln_1.bias", {o.dim});
    for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      add(h + "attn." + p + ".weight", {o.dim, o.dim});
      add(h + "attn." + p + ".bias", {o.dim});
    }
    add(h + "ln_2.weight", {o.dim});
    add(h + "ln_2.bias", {o.dim});
    add(h + "mlp.fc_in.weight", {4 * o.dim, o.dim});
    add(h + "mlp.fc_in.bias", {4 * o.dim});
    add(h + "mlp.fc_out.weight", {o.dim, 4 * o.dim});
    add(h + "mlp.fc_out.bias", {o.dim});
  }
  add("ln_f.weight", {o.dim});
  return m;
}

}  // namespace

void register_bench_optim(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("optim", "optimizer step time, bandwidth use and state bytes (Google Benchmark)");
  auto o = std::make_shared<OptimBenchOptions>();
  cmd->add_option("--layers", o->layers, "GPT-2-like layers")->capture_default_str();
  cmd->add_option("--dim", o->dim, "model width")->capture_default_str();
  cmd->add_option("--vocab", o->vocab, "embedding rows")->capture_default_str();
  cmd->add_option("--min-time", o->min_time, "Google Benchmark min time per optimizer (s)")->capture_default_str();
  cmd->add_option("--threads", o->threads, "intra-op threads (0: LibTorch default)")->capture_default_str();
  cmd->callback([o] {
    if (o->threads > 0) torch::set_num_threads(o->threads);
    const Model model = gpt2_like(*o);
    torch::manual_seed(0);
    int64_t numel = 0;
    for (const auto& s : model.shapes) numel += c10::multiply_integers(s);

    // Streaming bandwidth on the same machine and threads: memcpy (2 words per element) and the
    // in-place y += x (3 words, every written array read first, like an optimizer step). The larger is
    // the baseline of bandwidth_fraction.
    auto src = torch::randn({numel}, torch::kFloat32), dst = torch::empty_like(src);
    const float* sp = src.data_ptr<float>();
    float* dp = dst.data_ptr<float>();
    Collect rep;
    benchmark::RegisterBenchmark("copy",
                                 [&](benchmark::State& st) {
                                   for (auto _ : st) {
                                     at::parallel_for(0, numel, kGrain, [&](int64_t b, int64_t e) {
                                       std::memcpy(dp + b, sp + b, sizeof(float) * (e - b));
                                     });
                                     benchmark::ClobberMemory();
                                   }
                                 })
        ->UseRealTime()
        ->MinTime(o->min_time);
    benchmark::RegisterBenchmark("axpy",
                                 [&](benchmark::State& st) {
                                   for (auto _ : st) {
                                     parallel_elements(numel, [=](int64_t k) { dp[k] += sp[k]; });
                                     benchmark::ClobberMemory();
                                   }
                                 })
        ->UseRealTime()
        ->MinTime(o->min_time);

    // One independent set of parameters, gradients and optimizer per method.
    struct Case {
      std::string name;
      double bytes_per_element;  // float32 words read + written per parameter per step
      std::vector<torch::Tensor> params;
      std::unique_ptr<Optimizer> opt;
    };
    std::vector<Case> cases;
    ParamTable table;
    for (const auto& [name, words] : std::vector<std::pair<std::string, double>>{
             {"adamw", 7}, {"torch-adamw", 7}, {"adam-mini", 5}, {"sgd-sai", 5}, {"apollo-mini", 3}}) {
      Case c;
      c.name = name;
      c.bytes_per_element = 4 * words;
      std::vector<std::pair<std::string, torch::Tensor>> named;
      for (size_t i = 0; i < model.names.size(); ++i) {
        auto p = torch::randn(model.shapes[i], torch::kFloat32);
        p.mutable_grad() = torch::randn_like(p);
        c.params.push_back(p);
        named.emplace_back(model.names[i], p);
      }
      table = ParamTable(named);
      ModelInfo info;
      info.dim = o->dim;
      info.n_heads = 8;
      OptimizerInputs in{model.names, c.params, name == "adam-mini" ? adam_mini_rules(table, info) : Partition{}, {}};
      c.opt = make_optimizer(name, in, default_options(name));
      c.opt->step();  // allocate state outside the timing
      cases.push_back(std::move(c));
    }
    for (auto& c : cases)
      benchmark::RegisterBenchmark(c.name.c_str(),
                                   [&c](benchmark::State& st) {
                                     for (auto _ : st) c.opt->step();
                                   })
          ->UseRealTime()
          ->MinTime(o->min_time);
    int argc = 1;
    char arg0[] = "blocksharp";
    char* argv[] = {arg0, nullptr};
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks(&rep);
    benchmark::ClearRegisteredBenchmarks();

    const double memcpy_bw = 2.0 * 4.0 * static_cast<double>(numel) / rep.seconds.at("copy");
    const double axpy_bw = 3.0 * 4.0 * static_cast<double>(numel) / rep.seconds.at("axpy");
    const double copy_bw = std::max(memcpy_bw, axpy_bw);
    const double t_torch = rep.seconds.at("torch-adamw"), t_adamw = rep.seconds.at("adamw");
    const int64_t adamw_state = cases[0].opt->state_bytes();
    nlohmann::json out = {{"bench", "optim"},
                          {"parameters", numel},
                          {"tensors", model.names.size()},
                          {"dtype", "float32"},
                          {"threads", torch::get_num_threads()},
                          {"memcpy_bandwidth_GBps", memcpy_bw / 1e9},
                          {"axpy_bandwidth_GBps", axpy_bw / 1e9},
                          {"copy_bandwidth_GBps", copy_bw / 1e9}};
    for (auto& c : cases) {
      const double t = rep.seconds.at(c.name);
      const double bw = c.bytes_per_element * static_cast<double>(numel) / t;
      out["optimizers"][c.name] = {{"step_ms", t * 1e3},
                                   {"bytes_per_step", c.bytes_per_element * static_cast<double>(numel)},
                                   {"bandwidth_GBps", bw / 1e9},
                                   {"bandwidth_fraction", bw / copy_bw},
                                   {"speedup_vs_torch_adamw", t_torch / t},
                                   {"step_time_over_adamw", t / t_adamw},
                                   {"state_bytes", c.opt->state_bytes()},
                                   {"state_bytes_over_adamw", static_cast<double>(c.opt->state_bytes()) / adamw_state}};
    }
    // APOLLO-Mini's state on the projected (attn / mlp) matrices alone, against AdamW's on the same.
    {
      std::vector<std::string> names;
      std::vector<torch::Tensor> ts;
      for (size_t i = 0; i < model.names.size(); ++i)
        if (model.shapes[i].size() == 2 &&
            (model.names[i].find("attn") != std::string::npos || model.names[i].find("mlp") != std::string::npos)) {
          names.push_back(model.names[i]);
          ts.push_back(cases.back().params[i]);
        }
      auto mini = make_optimizer("apollo-mini", OptimizerInputs(names, ts), default_options("apollo-mini"));
      auto full = make_optimizer("adamw", OptimizerInputs(names, ts), default_options("adamw"));
      out["optimizers"]["apollo-mini"]["state_bytes_over_adamw_projected_weights"] =
          static_cast<double>(mini->state_bytes()) / static_cast<double>(full->state_bytes());
    }
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace bs
