// `blocksharp bench optim`: optimizer step cost on a GPT-2-like set of float32 tensors (>= 32M
// parameters), measured with Google Benchmark in one process at each thread count: step time, bytes a
// step must move over the copy bandwidth measured at the same thread count, speedup over LibTorch's
// AdamW, state bytes over AdamW's.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "adam_mini_partition.h"
#include "bench_timing.h"
#include "bracket_pass.h"
#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "cpu_loop.h"
#include "huge_pages.h"
#include "large_blocks.h"
#include "optimizer.h"
#include "session.h"

namespace bs {

namespace {

struct OptimBenchOptions {
  int64_t layers = 8, dim = 512, vocab = 16384;
  double min_time = 0.5;
  int rounds = 3;
  int paired_steps = 24;
  bool fused_qkv = false;    // attention as HF GPT-2's Conv1D c_attn / c_proj
  std::vector<int> threads;  // empty: 1 and every core
};

// Captures each benchmark's real time per iteration (seconds), the least over its rounds (registered
// as "name/round"): the rounds interleave every case, so a slow spell of the machine (this VM's
// bandwidth wanders by +-20 % over seconds) lands on one round of each case, not on one case. Each
// round's time is kept too, for ratios taken within a round (median_ratio).
class Collect : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs)
      if (r.iterations > 0) {
        const std::string& fn = r.run_name.function_name;
        const double t = r.real_accumulated_time / static_cast<double>(r.iterations);
        const std::string name = fn.substr(0, fn.rfind('/'));
        auto [it, fresh] = seconds.emplace(name, t);
        if (!fresh) it->second = std::min(it->second, t);
        per_round[name].push_back(t);  // rounds run in order, one time per case each
      }
  }
  // The median over rounds of a's time / b's time in the same round: the two measured seconds apart
  // at most, where each one's best round may come from different spells of the machine.
  double median_ratio(const std::string& a, const std::string& b) const {
    return median_of_ratios(per_round.at(a), per_round.at(b));
  }
  std::map<std::string, double> seconds;
  std::map<std::string, std::vector<double>> per_round;
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
    if (o.fused_qkv) {  // Conv1D: [in, out], q/k/v side by side in the columns of c_attn
      add(h + "attn.c_attn.weight", {o.dim, 3 * o.dim});
      add(h + "attn.c_attn.bias", {3 * o.dim});
      add(h + "attn.c_proj.weight", {o.dim, o.dim});
      add(h + "attn.c_proj.bias", {o.dim});
    } else {
      for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        add(h + "attn." + p + ".weight", {o.dim, o.dim});
        add(h + "attn." + p + ".bias", {o.dim});
      }
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

int64_t total_numel(const Model& m) {
  int64_t n = 0;
  for (const auto& s : m.shapes) n += c10::multiply_integers(s);
  return n;
}

// The float32 words per parameter a step must move: the update's reads and writes, plus one read of
// what the clipping threshold is taken over (a global order statistic needs every value first: |g|
// for SGDClip and for AdamClip at its default weight decay of 0, |g + wd p|, two words, for AdamClip
// with decay: build_cases). `allocates`: the step allocates and frees LibTorch temporaries
// (LibTorch's AdamW, APOLLO-Mini's projections), so it sits out the paired passes (run_at).
struct Method {
  std::string name;
  double update_words, threshold_words = 0;
  bool allocates = false;
};
const std::vector<Method> kMethods = {{"adamw", 7},       {"torch-adamw", 7, 0, true}, {"adam-mini", 5},
                                      {"sgd-sai", 5},     {"apollo-mini", 3, 0, true}, {"blockwise-adamw", 7},
                                      {"sgd-clip", 5, 1}, {"adam-clip", 7, 1}};

// One independent set of parameters, gradients and optimizer for a method.
struct Case {
  Method method;
  double floor_words() const { return method.update_words + method.threshold_words; }
  std::vector<torch::Tensor> params;
  std::unique_ptr<Optimizer> opt;
};

// One independent set of parameters, gradients and optimizer per method (in kMethods' order),
// allocated starting at method `first`: where a case's memory lands moves its step time by up to 14 %
// on this VM (the first-allocated case ran slowest in every run), so each round builds them anew
// from another first case.
std::vector<Case> build_cases(const Model& model, const OptimBenchOptions& o, size_t first) {
  torch::manual_seed(0);
  std::vector<Case> cases(kMethods.size());
  for (size_t k = 0; k < kMethods.size(); ++k) {
    const size_t at = (first + k) % kMethods.size();
    const std::string& name = kMethods[at].name;
    Case& c = cases[at];
    c.method = kMethods[at];
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (size_t i = 0; i < model.names.size(); ++i) {
      auto p = torch::randn(model.shapes[i], torch::kFloat32);
      p.mutable_grad() = torch::randn_like(p);
      c.params.push_back(p);
      named.emplace_back(model.names[i], p);
    }
    const ParamTable table(named);
    ModelInfo info;
    info.dim = o.dim;
    info.n_heads = 8;
    const std::string opt_name = name == "blockwise-adamw" ? "adamw" : name;
    Partition part;
    if (name == "adam-mini") part = o.fused_qkv ? adam_mini_slices(table, info) : adam_mini_rules(table, info);
    OptimizerInputs in{model.names, c.params, part, {}};
    in.clip.fraction = name == "sgd-clip" ? 0.1 : 0.5;  // the paper's defaults
    c.opt = make_optimizer(opt_name, in, default_options(opt_name));
    if (name == "adam-clip" && default_options(opt_name).weight_decay != 0) c.method.threshold_words = 2;
    if (name == "blockwise-adamw") {  // a learning rate per tensor, as a blockwise_lr config sets them
      std::vector<double> lrs;
      for (size_t i = 0; i < model.names.size(); ++i) lrs.push_back(1e-3 * (1 + static_cast<double>(i % 5)));
      c.opt->set_lrs(lrs);
    }
    c.opt->step();  // allocate state outside the timing
  }
  return cases;
}

// A thread's share of the read-only baseline at its best: four quarters stepped together, 64 values of
// each in turn, with software prefetch as far ahead as the clipping threshold's pass asks
// (kBracketPrefetch, optimizers/bracket_pass.h); one sum per quarter's lane, so no chain of adds bounds it.
__attribute__((always_inline)) inline float four_streams_sum_body(const float* x, int64_t n) {
  const int64_t q = n / 4 / 64 * 64;
  float lanes[4][16] = {};
  for (int64_t k = 0; k < q; k += 64)
    for (int w = 0; w < 4; ++w) {
      const float* y = x + w * q + k;
      for (int u = 0; u < 4; ++u) __builtin_prefetch(y + kBracketPrefetch + 16 * u);  // a hint: no fault past the end
      for (int u = 0; u < 4; ++u)
        for (int l = 0; l < 16; ++l) lanes[w][l] += y[16 * u + l];
    }
  float sum = 0;
  for (int64_t k = 4 * q; k < n; ++k) sum += x[k];
  for (const auto& lane : lanes)
    for (const float v : lane) sum += v;
  return sum;
}
#ifdef BS_LOOP_AVX512
__attribute__((target("avx512f"))) float four_streams_sum_avx512(const float* x, int64_t n) {
  return four_streams_sum_body(x, n);
}
#endif
float four_streams_sum(const float* x, int64_t n) {
#ifdef BS_LOOP_AVX512
  if (use_avx512()) return four_streams_sum_avx512(x, n);
#endif
  return four_streams_sum_body(x, n);
}

// One thread count's run: the bandwidth baselines and every case, measured with Google Benchmark, in
// rounds on cases built anew each round (build_cases).
nlohmann::json run_at(int threads, const Model& model, const OptimBenchOptions& o) {
  const int64_t numel = total_numel(model);
  const double min_time = o.min_time;
  torch::set_num_threads(threads);
  // Streaming bandwidth at the same thread count: memcpy (2 words per element) and the in-place
  // y += x (3 words, every written array read first, like an optimizer step). The larger is the
  // baseline of bandwidth_fraction. And a read-only stream (a sum: 1 word), the speed at which the
  // clipping threshold's pass could at best read: the faster of a plain single stream per thread and
  // four streams per thread with software prefetch (four_streams_sum). One stream per core read at
  // 0.65-0.72 of y += x's speed on the AMD machine and 0.42-0.47 on the Xeon of 2026-12-02 (evening),
  // four with prefetch at 0.64-0.68 there (1 thread) and 0.74-0.95 (2 threads).
  // Each baseline rotates over four arrays of the model's size (the copies over two pairs), one per
  // iteration, so that what it reads comes from memory, as a step's does (AdamW streams four such
  // arrays): on the Xeon of 2026-12-02, whose last-level cache is 260 MB, re-reading one array of bench
  // optim's set ran at 46 GB/s at 2 threads and rotating over four at 30.
  std::vector<torch::Tensor> arrays;
  for (int a = 0; a < 4; ++a) arrays.push_back(torch::randn({numel}, torch::kFloat32));
  auto array = [&](int64_t k) { return arrays[static_cast<size_t>(k % 4)].data_ptr<float>(); };
  // The baselines: pass(it) once per iteration it, the arrays it reads rotating with it (above).
  std::vector<float> piece_sums(static_cast<size_t>((numel + kGrain - 1) / kGrain));
  std::vector<float> thread_sums(static_cast<size_t>(threads));
  const std::vector<std::pair<std::string, std::function<void(int64_t)>>> baselines = {
      {"copy",
       [&](int64_t it) {
         const float* sp = array(2 * (it % 2));
         float* dp = array(2 * (it % 2) + 1);
         at::parallel_for(0, numel, kGrain,
                          [&](int64_t b, int64_t e) { std::memcpy(dp + b, sp + b, sizeof(float) * (e - b)); });
       }},
      {"axpy",
       [&](int64_t it) {
         const float* sp = array(2 * (it % 2));
         float* dp = array(2 * (it % 2) + 1);
         parallel_elements(numel, [=](int64_t k) { dp[k] += sp[k]; });
       }},
      {"read",
       [&](int64_t it) {
         const float* sp = array(it);
         at::parallel_for(0, static_cast<int64_t>(piece_sums.size()), 1, [&](int64_t begin, int64_t end) {
           for (int64_t q = begin; q < end; ++q) {
             const int64_t b = q * kGrain, e = std::min(numel, b + kGrain);
             float lanes[16] = {};  // 16 independent sums: vectorized
             int64_t k = b;
             for (; k + 16 <= e; k += 16)
               for (int l = 0; l < 16; ++l) lanes[l] += sp[k + l];
             for (; k < e; ++k) lanes[0] += sp[k];
             float sum = 0;
             for (const float v : lanes) sum += v;
             piece_sums[static_cast<size_t>(q)] = sum;
           }
         });
         benchmark::DoNotOptimize(piece_sums.data());
       }},
      {"read4", [&](int64_t it) {
         const float* sp = array(it);
         at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
           for (int64_t t = begin; t < end; ++t) {
             const int64_t b = numel * t / threads, e = numel * (t + 1) / threads;
             thread_sums[static_cast<size_t>(t)] = four_streams_sum(sp + b, e - b);
           }
         });
         benchmark::DoNotOptimize(thread_sums.data());
       }}};
  Collect rep;
  int argc = 1;
  char arg0[] = "blocksharp";
  char* argv[] = {arg0, nullptr};
  benchmark::Initialize(&argc, argv);
  // Paired steps: one step of every case and one pass of every baseline after another (each pass
  // starting at the next one), so a case, AdamW and the baselines are timed tens of milliseconds apart
  // and any slow spell of the machine lands on all; each ratio to AdamW and each fraction of a floor is
  // also reported as the median of the passes' values. The passes are shared out over the rounds, each
  // share run after its round on that round's cases, so that the medians take in every round's placement
  // of the cases' memory (above), not only the last one's. The methods whose step allocates sit out:
  // with them in the passes, the fused case that followed them ran up to 1.6x slower (2 threads) than
  // in its rounds.
  std::map<std::string, std::vector<double>> paired;
  const int passes_per_round = (o.paired_steps + o.rounds - 1) / o.rounds;
  auto paired_passes = [&](std::vector<Case>& round_cases, int first_pass) {
    std::vector<std::pair<std::string, std::function<void()>>> timed;
    for (auto& c : round_cases)
      if (!c.method.allocates) timed.emplace_back(c.method.name, [&c] { c.opt->step(); });
    for (const auto& [name, pass] : baselines)  // each one's arrays rotate with its own count, as in the rounds
      timed.emplace_back(name, [pass = pass, it = int64_t{0}]() mutable { pass(it++); });
    for (int pass = first_pass; pass < first_pass + passes_per_round; ++pass)
      for (size_t k = 0; k < timed.size(); ++k) {
        const auto& [name, run] = timed[(k + static_cast<size_t>(pass)) % timed.size()];
        const auto a = std::chrono::steady_clock::now();
        run();
        paired[name].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      }
  };
  std::vector<Case> cases;
  for (int round = 0; round < o.rounds; ++round) {
    cases.clear();  // the last round's memory, free before this round's is taken
    cases = build_cases(model, o, static_cast<size_t>(round));
    const std::string tag = "/" + std::to_string(round);
    for (const auto& [name, pass] : baselines) {
      benchmark::RegisterBenchmark((name + tag).c_str(),
                                   [pass = pass](benchmark::State& st) {
                                     int64_t it = 0;
                                     for (auto _ : st) {
                                       pass(it++);
                                       benchmark::ClobberMemory();
                                     }
                                   })
          ->UseRealTime()
          ->MinTime(min_time);
    }
    for (size_t k = 0; k < cases.size(); ++k) {  // each round starts at another case (see above)
      auto& c = cases[(k + static_cast<size_t>(round)) % cases.size()];
      benchmark::RegisterBenchmark((c.method.name + tag).c_str(),
                                   [&c](benchmark::State& st) {
                                     for (auto _ : st) c.opt->step();
                                   })
          ->UseRealTime()
          ->MinTime(min_time);
    }
    benchmark::RunSpecifiedBenchmarks(&rep);
    benchmark::ClearRegisteredBenchmarks();
    paired_passes(cases, round * passes_per_round);
  }
  // A baseline's time in its best round and in each round is at most its paired median: the bandwidth
  // it stands for is one this machine reached in this run. On the Zen 5 VM of 2026-12-03 every round of
  // one run timed memcpy at 0.8 GB/s and y += x at 10 GB/s at 1 thread (their paired medians: 33 and 54),
  // and every case then read 5-6 times its copy bandwidth.
  for (const auto& [name, pass] : baselines) {
    const double at_most = median(paired.at(name));
    rep.seconds.at(name) = std::min(rep.seconds.at(name), at_most);
    for (double& s : rep.per_round.at(name)) s = std::min(s, at_most);
  }

  const double n = static_cast<double>(numel);
  const double memcpy_bw = 2.0 * 4.0 * n / rep.seconds.at("copy"), axpy_bw = 3.0 * 4.0 * n / rep.seconds.at("axpy");
  const double read1_bw = 4.0 * n / rep.seconds.at("read"), read4_bw = 4.0 * n / rep.seconds.at("read4");
  const double copy_bw = std::max(memcpy_bw, axpy_bw), read_bw = std::max(read1_bw, read4_bw);
  const double t_torch = rep.seconds.at("torch-adamw"), t_adamw = rep.seconds.at("adamw");
  const int64_t adamw_state = cases[0].opt->state_bytes();
  nlohmann::json out = {{"threads", torch::get_num_threads()},    {"memcpy_bandwidth_GBps", memcpy_bw / 1e9},
                        {"axpy_bandwidth_GBps", axpy_bw / 1e9},   {"copy_bandwidth_GBps", copy_bw / 1e9},
                        {"read_one_stream_GBps", read1_bw / 1e9}, {"read_four_streams_GBps", read4_bw / 1e9},
                        {"read_bandwidth_GBps", read_bw / 1e9}};
  // A case's floor in seconds at the given bandwidths: every word at the copy bandwidth, or the
  // clipping threshold's words at the read-only speed.
  auto floor_seconds = [&](const Case& c, double copy, double read, bool threshold_at_read_speed) {
    return threshold_at_read_speed ? c.method.update_words * 4.0 * n / copy + c.method.threshold_words * 4.0 * n / read
                                   : c.floor_words() * 4.0 * n / copy;
  };
  // The same fractions within each round of `times` (rep.per_round: the baselines run first in every
  // round, seconds before the cases; paired: each pass's baselines milliseconds from the case), and their
  // median: a case's best round and a baseline's may come from different spells of the machine.
  auto median_fraction = [&](const std::map<std::string, std::vector<double>>& times, const Case& c,
                             bool threshold_at_read_speed) {
    std::vector<double> fractions;
    const auto& case_s = times.at(c.method.name);
    for (size_t r = 0; r < case_s.size(); ++r) {
      const double copy_r = std::max(2.0 * 4.0 * n / times.at("copy")[r], 3.0 * 4.0 * n / times.at("axpy")[r]);
      const double read_r = std::max(4.0 * n / times.at("read")[r], 4.0 * n / times.at("read4")[r]);
      fractions.push_back(floor_seconds(c, copy_r, read_r, threshold_at_read_speed) / case_s[r]);
    }
    return median(fractions);
  };
  for (const auto& [name, pass] : baselines) out["paired_baseline_ms_median"][name] = median(paired.at(name)) * 1e3;
  out["paired_passes"] = passes_per_round * o.rounds;
  for (auto& c : cases) {
    const double t = rep.seconds.at(c.method.name);
    const double bw = c.floor_words() * 4.0 * n / t;
    out["optimizers"][c.method.name] = {
        {"step_ms", t * 1e3},
        {"bytes_per_step", c.floor_words() * 4.0 * n},
        {"bandwidth_GBps", bw / 1e9},
        {"bandwidth_fraction", bw / copy_bw},
        {"bandwidth_fraction_round_median", median_fraction(rep.per_round, c, false)},
        {"speedup_vs_torch_adamw", t_torch / t},
        {"step_time_over_adamw", t / t_adamw},
        {"step_time_over_adamw_round_median", rep.median_ratio(c.method.name, "adamw")},
        {"state_bytes", c.opt->state_bytes()},
        {"state_bytes_over_adamw", static_cast<double>(c.opt->state_bytes()) / adamw_state}};
    if (paired.count(c.method.name)) {
      out["optimizers"][c.method.name]["paired_step_ms_median"] = median(paired.at(c.method.name)) * 1e3;
      out["optimizers"][c.method.name]["step_time_over_adamw_paired_median"] =
          median_of_ratios(paired.at(c.method.name), paired.at("adamw"));
      out["optimizers"][c.method.name]["bandwidth_fraction_paired_median"] = median_fraction(paired, c, false);
      if (c.method.threshold_words > 0)
        out["optimizers"][c.method.name]["fraction_of_floor_with_threshold_at_read_speed_paired_median"] =
            median_fraction(paired, c, true);
    }
    if (c.method.threshold_words > 0) {  // the floor with the threshold's words read at the read-only speed
      out["optimizers"][c.method.name]["fraction_of_floor_with_threshold_at_read_speed"] =
          floor_seconds(c, copy_bw, read_bw, true) / t;
      out["optimizers"][c.method.name]["fraction_of_floor_with_threshold_at_read_speed_round_median"] =
          median_fraction(rep.per_round, c, true);
    }
  }
  // With every case's memory still in place: how much of it lies on huge pages (huge_pages.h).
  out["anon_huge_page_bytes"] = huge_pages::anon_huge_bytes();
  out["huge_page_advised_bytes"] = huge_pages::advised_bytes();
  return out;
}

}  // namespace

void register_bench_optim(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("optim", "optimizer step time, bandwidth use and state bytes (Google Benchmark)");
  auto o = std::make_shared<OptimBenchOptions>();
  cmd->add_option("--layers", o->layers, "GPT-2-like layers")->capture_default_str();
  cmd->add_option("--dim", o->dim, "model width")->capture_default_str();
  cmd->add_option("--vocab", o->vocab, "embedding rows")->capture_default_str();
  cmd->add_option("--min-time", o->min_time, "Google Benchmark min time per optimizer and round (s)")
      ->capture_default_str();
  cmd->add_option("--rounds", o->rounds,
                  "interleaved rounds of every case at each thread count; each case reports its best round")
      ->capture_default_str();
  cmd->add_option("--paired-steps", o->paired_steps,
                  "passes of one step of every fused case in turn, shared out over the rounds (each round's share "
                  "after it, on its cases); ratios to AdamW also as the median of the passes' ratios")
      ->capture_default_str();
  cmd->add_flag("--fused-qkv", o->fused_qkv,
                "attention as Hugging Face GPT-2's Conv1D attn.c_attn [dim, 3 dim] and attn.c_proj instead of "
                "q/k/v/o projections; Adam-mini takes the slice partition (q, k per head, v per column)");
  cmd->add_option("--threads", o->threads,
                  "intra-op thread counts, each measured with its own bandwidth baseline (default: 1 and every core)")
      ->delimiter(',');
  cmd->callback([o] {
    require_counts(
        {{"--layers", o->layers}, {"--vocab", o->vocab}, {"--rounds", o->rounds}, {"--paired-steps", o->paired_steps}});
    if (o->dim < 8 || o->dim % 8 != 0)  // Adam-mini's rules cut q and k into the set's 8 heads
      throw UserError("--dim must be a positive multiple of 8 (the set's 8 attention heads), got " +
                      std::to_string(o->dim));
    require_positive("--min-time", o->min_time, "a positive number of seconds");
    for (int t : o->threads)
      if (t < 1) throw UserError("--threads: thread counts must be >= 1, got " + std::to_string(t));
    for (int t : o->threads) warn_threads_beyond_cores("--threads", t);
    if (o->threads.empty()) {
      o->threads = {1};
      if (const int all = default_training_threads(); all > 1) o->threads.push_back(all);
    }
    const Model model = gpt2_like(*o);
    const int64_t numel = total_numel(model);
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    nlohmann::json out = {{"bench", "optim"},
                          {"parameters", numel},
                          {"tensors", model.names.size()},
                          {"dtype", "float32"},
                          {"rounds", o->rounds},
                          {"paired_steps", o->paired_steps},
                          {"fused_qkv", o->fused_qkv},
                          {"huge_pages", huge_pages::describe()},
                          {"large_block_cache", describe_large_block_cache()},
                          {"glibc_tunables", tunables ? tunables : ""}};
    for (int t : o->threads) out["runs"].push_back(run_at(t, model, *o));
    // APOLLO-Mini's state on the projected (attn / mlp) matrices alone, against AdamW's on the same.
    {
      std::vector<std::string> names;
      std::vector<torch::Tensor> ts;
      for (size_t i = 0; i < model.names.size(); ++i)
        if (model.shapes[i].size() == 2 &&
            (model.names[i].find("attn") != std::string::npos || model.names[i].find("mlp") != std::string::npos)) {
          names.push_back(model.names[i]);
          ts.push_back(torch::zeros(model.shapes[i], torch::kFloat32));
        }
      auto mini = make_optimizer("apollo-mini", OptimizerInputs(names, ts), default_options("apollo-mini"));
      auto full = make_optimizer("adamw", OptimizerInputs(names, ts), default_options("adamw"));
      out["apollo_mini_state_bytes_over_adamw_projected_weights"] =
          static_cast<double>(mini->state_bytes()) / static_cast<double>(full->state_bytes());
    }
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace bs
