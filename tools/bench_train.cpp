// `blocksharp bench train`: tokens per second of a full training step (forward, loss, backward, the
// non-finite check, global-norm clipping, AdamW) of built-in language models, against the same
// architecture in plain PyTorch eager (tools/experiments/bench_train_pytorch.py) run by this command
// with the same batch (same seed, same random tokens), threads and LibTorch; one JSON object of ratios.
// Each round of either side runs in a process of its own (blocksharp's: this executable again, with the
// hidden --one-side), so that no round inherits another's heap; peak resident memory is read per process
// (VmHWM reset before the model is built).
#include <algorithm>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_timing.h"
#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "gemm.h"
#include "huge_pages.h"
#include "large_blocks.h"
#include "memory.h"
#include "models/model_zoo.h"
#include "optimizer_setup.h"
#include "progress.h"
#include "session.h"
#include "train_loop.h"

#ifndef BS_SOURCE_DIR
#define BS_SOURCE_DIR "."
#endif

namespace bs {

namespace {

struct TrainBenchOptions {
  bool one_side = false;  // (hidden) one round of blocksharp's side, in this process: the parent's child
  std::vector<std::string> models = {"gpt2-small-cpu", "llama-small-cpu"};
  int64_t batch_size = 8, seq_len = 0, steps = 10, rounds = 5;
  int threads = 0;  // 0: every core
  uint64_t seed = 0;
  std::vector<std::string> backends = {"onednn", "libtorch"};
  std::string python = "/usr/bin/python3";  // "" or "none": blocksharp only
  std::string script = std::string(BS_SOURCE_DIR) + "/tools/experiments/bench_train_pytorch.py";
};

// The same tokens as the script's torch.randint(0, vocab, (B, T + 1), generator seeded with `seed`).
Batch random_tokens(int64_t vocab, int64_t B, int64_t T, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto t = torch::randint(0, vocab, {B, T + 1}, gen, torch::kLong);
  return {t.slice(1, 0, T).contiguous(), t.slice(1, 1, T + 1).contiguous()};
}

// Median seconds of `steps` training steps of `model`, after two untimed ones; peak memory of the
// process from here on. Run once in a fresh process (--one-side): a round after another in the same
// process started from the earlier one's freed heap, and the malloc_trim(0) that took that memory out
// of the resident size (for the round's own growth) broke the heap's huge pages into small ones, after
// which rounds 2 on ran 10-30 % slower (gpt2-small-cpu at 1 thread on the Zen 5 VM, 2026-12-04: 230
// ms, then 263-303; 228-231 in every round without huge pages or without the trim).
nlohmann::json bench_blocksharp(const std::string& model, const TrainBenchOptions& o) {
  reset_peak_resident();
  const int64_t before = resident_bytes();
  CommonOptions c;
  c.model = model;
  c.batch_size = o.batch_size;
  c.seq_len = o.seq_len;
  c.seed = o.seed;
  // The threads set here, not by the session: --threads beyond the cores is said once, by the parent.
  if (const int t = o.threads > 0 ? o.threads : default_training_threads(); t > 0) at::set_num_threads(t);
  Session s = open_session(c);
  const ModelInfo info = s.net->info();
  const int64_t T = o.seq_len > 0 ? o.seq_len : info.seq_len;
  const Batch batch = random_tokens(info.vocab, o.batch_size, T, o.seed);
  OptimizerSetup setup = optimizer_setup("adamw", s.net->named_parameters(), info, {});
  auto opt = make_optimizer("adamw", setup.inputs, default_options("adamw"));
  auto params = s.net->parameters();
  double loss = 0;
  auto step = [&] {  // as train()'s step, without schedule and data parallelism
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    auto l = batch_loss(*s.net, batch, s.loss, model);
    loss = l.item<double>();
    l.backward();
    if (!check_and_clip_grads(*s.net, 1.0).empty()) throw UserError("bench train: non-finite gradient");
    opt->step();
  };
  step();
  step();
  std::vector<double> t;
  for (int64_t i = 0; i < o.steps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return {{"parameters", n},
          {"seq_len", T},
          {"step_ms", median(t) * 1e3},
          {"step_ms_min", *std::min_element(t.begin(), t.end()) * 1e3},
          {"tokens_per_s", static_cast<double>(o.batch_size * T) / median(t)},
          {"last_loss", loss},
          {"token_sum", batch.inputs.sum().item<int64_t>()},
          {"peak_rss_MiB", static_cast<double>(peak_resident_bytes()) / (1 << 20)},
          {"rss_before_model_MiB", static_cast<double>(before) / (1 << 20)}};
}

// The JSON object a side's process prints as its last line (`cmd`, stdout and stderr together); a
// failure is one line naming `who` and what the process said last (its own "blocksharp: error: " cut).
nlohmann::json side_json(const std::string& cmd, const std::string& who) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) throw UserError("bench train: cannot run " + who);
  std::string text;
  char buf[4096];
  while (size_t k = std::fread(buf, 1, sizeof buf, f)) text.append(buf, k);
  const int status = pclose(f);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  std::string last = text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
  if (status != 0 || last.empty() || last.front() != '{') {
    const std::string prefix = "blocksharp: error: ";
    if (last.rfind(prefix, 0) == 0) last = last.substr(prefix.size());
    throw UserError("bench train: " + who + " failed (exit " +
                    std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + "): " + last);
  }
  return nlohmann::json::parse(last);
}

// The options both sides' processes take alike.
std::string common_args(int64_t T, const TrainBenchOptions& o, int threads) {
  return " --batch-size " + std::to_string(o.batch_size) + " --seq-len " + std::to_string(T) + " --threads " +
         std::to_string(threads) + " --steps " + std::to_string(o.steps) + " --seed " + std::to_string(o.seed);
}

// One round of blocksharp's side with `backend`, in a process of its own (this executable again).
nlohmann::json bench_blocksharp_process(const std::string& model, const std::string& backend,
                                        const TrainBenchOptions& o, int threads) {
  const std::string cmd = "'" + self_path("bench train") + "' bench train --one-side --python none --models " + model +
                          " --gemm " + backend + common_args(o.seq_len, o, threads);
  return side_json(cmd, "blocksharp's side (" + model + ", --gemm " + backend + ")");
}

// The PyTorch script's JSON line for `model`; a failure to run it is one line naming the script.
nlohmann::json bench_pytorch(const std::string& model, int64_t T, const TrainBenchOptions& o, int threads) {
  const std::string cmd = "'" + o.python + "' '" + o.script + "' --model " + model + common_args(T, o, threads);
  return side_json(cmd, "'" + o.script + "'");
}

// The built-in presets of the language-model families (what the PyTorch side mirrors: its PRESETS,
// checked against the zoo by tests/cli/test_bench_train.py).
std::vector<std::string> language_presets() {
  std::vector<std::string> names;
  for (const auto& name : preset_names())
    if (resolve_model_config(name, {}, 0, 0).language_model()) names.push_back(name);
  return names;
}

}  // namespace

void register_bench_train(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "train", "training tokens/s and peak memory against the same model in plain PyTorch eager (one JSON object)");
  auto o = std::make_shared<TrainBenchOptions>();
  cmd->add_option("--models", o->models, "built-in language models")
      ->delimiter(',')
      ->check(CLI::IsMember(language_presets()))
      ->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "sequences per batch")->capture_default_str();
  cmd->add_option("--seq-len", o->seq_len, "tokens per sequence (0: each preset's context)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps per round (median), after two untimed")->capture_default_str();
  cmd->add_option("--rounds", o->rounds,
                  "rounds, blocksharp then PyTorch in each: each side's best round is reported, and the ratio "
                  "within each round (and their median)")
      ->capture_default_str();
  cmd->add_option("--gemm", o->backends,
                  "matrix-product backends of blocksharp's side, the first the headline (libtorch: LibTorch's own "
                  "BLAS, as PyTorch eager uses)")
      ->delimiter(',')
      ->check(CLI::IsMember({"onednn", "libtorch"}))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "intra-op threads of both (0: as train, every core)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the initialisation and the tokens")->capture_default_str();
  cmd->add_option("--python", o->python, "interpreter with torch for the PyTorch side (none: skip it)")
      ->capture_default_str();
  cmd->add_option("--script", o->script, "the PyTorch side")->capture_default_str();
  cmd->add_flag("--one-side", o->one_side, "one round of blocksharp's side (one model, one --gemm), as a JSON line")
      ->group("");  // hidden: how this command runs each round of blocksharp's side in a process of its own
  cmd->callback([o] {
    require_counts({{"--batch-size", o->batch_size}, {"--steps", o->steps}, {"--rounds", o->rounds}});
    require_non_negative("--seq-len", o->seq_len, "each preset's context");
    require_non_negative("--threads", o->threads, "as train, every core");
    if (!o->one_side) warn_threads_beyond_cores("--threads", o->threads);
    const bool with_torch = !o->python.empty() && o->python != "none";
    if (with_torch && access(o->python.c_str(), X_OK) != 0)
      throw UserError("--python '" + o->python + "': not an executable (--python none measures blocksharp alone)");
    if (with_torch && !std::ifstream(o->script)) throw UserError("--script '" + o->script + "': no such file");
    if (o->backends.empty()) throw UserError("--gemm: give at least one backend");
    if (o->one_side) {
      if (o->models.size() != 1 || o->backends.size() != 1)
        throw UserError("--one-side: give one model and one --gemm backend");
      gemm::ScopedBackend scope(o->backends[0] == "libtorch" ? gemm::Backend::LibTorch : gemm::Backend::OneDnn);
      nlohmann::json side = bench_blocksharp(o->models[0], *o);
      side["gemm"] = gemm::describe(gemm::backend());
      std::printf("%s\n", side.dump().c_str());
      return;
    }
    for (const auto& model : o->models)  // what each side's process would refuse, before any starts
      require_within_context(o->seq_len, resolve_model_config(model, {}, 0, 0).seq_len, "model '" + model + "'");
    // As train: --threads, else every core, else (0: OMP_NUM_THREADS set) what LibTorch took from the
    // environment; each side's process is then given the count.
    if (const int t = o->threads > 0 ? o->threads : default_training_threads(); t > 0) at::set_num_threads(t);
    const int threads = at::get_num_threads();
    nlohmann::json out = {{"bench", "train"},
                          {"batch_size", o->batch_size},
                          {"optimizer", "adamw"},
                          {"grad_clip", 1.0},
                          // The PyTorch process inherits the environment, GLIBC_TUNABLES included: both sides alike.
                          {"huge_pages", huge_pages::describe()},
                          {"large_block_cache", describe_large_block_cache()}};
    Progress bar("bench train: steps",
                 static_cast<int64_t>(o->models.size() * o->backends.size()) * o->rounds * o->steps);
    int64_t done = 0;
    for (const auto& model : o->models) {
      std::vector<nlohmann::json> best_ours(o->backends.size());
      nlohmann::json best_torch;
      // Each round's median step (ms) of each side: the ratio within a round pairs two runs a few seconds
      // apart, where the best rounds of the two sides may come from different spells of a noisy machine.
      std::vector<std::vector<double>> round_ms(o->backends.size());
      std::vector<double> torch_round_ms;
      auto keep_faster = [](nlohmann::json& best, nlohmann::json run, std::vector<double>& rounds) {
        rounds.push_back(run["step_ms"].get<double>());
        if (best.is_null() || run["step_ms"] < best["step_ms"]) best = std::move(run);
      };
      for (int64_t r = 0; r < o->rounds; ++r) {
        for (size_t b = 0; b < o->backends.size(); ++b) {
          keep_faster(best_ours[b], bench_blocksharp_process(model, o->backends[b], *o, threads), round_ms[b]);
          bar.update(done += o->steps);
        }
        if (with_torch)
          keep_faster(best_torch, bench_pytorch(model, best_ours[0]["seq_len"].get<int64_t>(), *o, threads),
                      torch_round_ms);
      }
      auto& m = out["models"][model];
      // The memory a step adds to the process it runs in (model, optimizer state, activations).
      const auto grown = [](const nlohmann::json& j) {
        return j["peak_rss_MiB"].get<double>() - j["rss_before_model_MiB"].get<double>();
      };
      for (size_t b = 0; b < o->backends.size(); ++b) {
        const std::string key = b == 0 ? "blocksharp" : "blocksharp_" + o->backends[b] + "_gemm";
        m[key] = best_ours[b];
        m[key]["step_ms_rounds"] = round_ms[b];  // each round's median step, in round order
        if (!with_torch) continue;
        m[key]["tokens_per_s_over_pytorch"] =
            best_ours[b]["tokens_per_s"].get<double>() / best_torch["tokens_per_s"].get<double>();
        // Each round's ratio (PyTorch's median step over ours, seconds apart) and their median.
        const std::vector<double> per_round = ratios(torch_round_ms, round_ms[b]);
        m[key]["tokens_per_s_over_pytorch_rounds"] = per_round;
        m[key]["tokens_per_s_over_pytorch_round_median"] = median(per_round);
        m[key]["peak_rss_growth_over_pytorch"] = grown(best_ours[b]) / grown(best_torch);
      }
      if (with_torch) {
        m["pytorch_eager"] = best_torch;
        m["pytorch_eager"]["step_ms_rounds"] = torch_round_ms;
      }
    }
    bar.finish();
    out["threads"] = torch::get_num_threads();
    // LibTorch's BLAS on kernels without AVX2 on a CPU with it makes the PyTorch side (and ours on it)
    // slower than this machine allows, and every ratio against it flattering: said beside the result
    // (on stderr, and in it).
    const std::string wider = gemm::wider_blas_core();
    const bool libtorch_side = with_torch || std::count(o->backends.begin(), o->backends.end(), "libtorch") > 0;
    if (!wider.empty() && libtorch_side) {
      const std::string msg = "LibTorch's OpenBLAS runs its " + gemm::blas_core() + " kernels on a CPU with " +
                              (wider == "SkylakeX" ? "AVX-512" : "AVX2") +
                              ": PyTorch eager and --gemm libtorch run slower than this CPU allows, and the ratios "
                              "against them read high; OPENBLAS_CORETYPE=" +
                              wider + " selects wider kernels";
      warn(msg);
      out["warnings"].push_back(msg);
    }
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace bs
