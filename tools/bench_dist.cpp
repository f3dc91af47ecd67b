// `blocksharp bench dist`: data-parallel scaling on this machine. Runs `launch -n N -- train` for each
// rank count (the 1-rank run is the baseline of the same invocation), at a fixed global batch (strong
// scaling) and at a fixed per-rank batch (weak scaling), and reads each run's train_summary.json for
// the loop time and the bytes each rank handed to collectives.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "models/model_zoo.h"
#include "progress.h"
#include "session.h"

namespace bs {

namespace {

struct DistBenchOptions {
  std::string model = "gpt2-small-cpu";
  int64_t steps = 30;
  int64_t batch_size = 8;  // global batch of the strong-scaling runs, per-rank batch of the weak ones
  std::vector<int> ranks = {1, 2};
  int threads = 1;  // intra-op threads per rank
  std::string out = "out/bench_dist";
};

nlohmann::json run(const DistBenchOptions& o, int n, int64_t global_batch, const std::string& tag) {
  const std::string dir = o.out + "/" + tag;
  const std::string cmd = "'" + self_path("bench dist") + "' launch -n " + std::to_string(n) + " -- train --model " +
                          o.model + " --steps " + std::to_string(o.steps) + " --batch-size " +
                          std::to_string(global_batch) + " --threads " + std::to_string(o.threads) +
                          " --eval-batches 1 --dist-check-every 0 --out " + dir + " > " + dir + ".log 2>&1";
  if (std::system(cmd.c_str()) != 0) throw UserError("bench dist: '" + cmd + "' failed; see " + dir + ".log");
  std::ifstream f(dir + "/train_summary.json");
  const auto s = nlohmann::json::parse(f, nullptr, false);
  if (s.is_discarded()) throw UserError("bench dist: no train_summary.json in '" + dir + "'");
  const double seconds = s.at("seconds").get<double>();
  const double bytes = s.at("bytes_communicated_per_rank").get<double>();
  return {{"ranks", n},
          {"global_batch", global_batch},
          {"seconds_per_step", seconds / static_cast<double>(o.steps)},
          {"examples_per_second", static_cast<double>(global_batch * o.steps) / seconds},
          {"bytes_communicated_per_rank_per_step", bytes / static_cast<double>(o.steps)},
          // What a ring all-reduce (Gloo's) puts on the wire per rank for that payload.
          {"ring_bytes_sent_per_rank_per_step", bytes / static_cast<double>(o.steps) * 2.0 * (n - 1) / n},
          {"optimizer_state_bytes_per_rank", s.at("optimizer_state_bytes_per_rank")}};
}

}  // namespace

void register_bench_dist(CLI::App& bench) {
  auto* cmd =
      bench.add_subcommand("dist", "data-parallel scaling (1 vs N local ranks) and bytes communicated per step");
  auto o = std::make_shared<DistBenchOptions>();
  cmd->add_option("--model", o->model, "built-in model")->capture_default_str();
  cmd->add_option("--steps", o->steps, "training steps per run")->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "global batch (strong scaling) = per-rank batch (weak scaling)")
      ->capture_default_str();
  cmd->add_option("--ranks", o->ranks, "rank counts (1,2 or 1 2); the first is the baseline")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "intra-op threads per rank")->capture_default_str();
  cmd->add_option("--out", o->out, "folder for the runs")->capture_default_str();
  cmd->callback([o] {
    // Every bad value named before the first run starts (a rank count of 0 died of a division by zero,
    // and a count the batch does not divide stopped the benchmark after the runs before it).
    if (!is_preset(o->model))
      throw UserError("--model '" + o->model + "': not a built-in model (" + preset_list() + ")");
    if (o->ranks.empty()) throw UserError("--ranks: give rank counts, the first the baseline");
    for (int n : o->ranks)
      if (n < 1) throw UserError("--ranks: rank counts must be >= 1, got " + std::to_string(n));
    require_counts({{"--steps", o->steps}, {"--batch-size", o->batch_size}});
    for (int n : o->ranks)
      if (o->batch_size % n != 0)
        throw UserError("--batch-size " + std::to_string(o->batch_size) + " is not divisible by " + std::to_string(n) +
                        " (every count in --ranks must divide it)");
    require_non_negative("--threads", o->threads);
    prepare_out_dir(o->out);
    nlohmann::json strong = nlohmann::json::array(), weak = nlohmann::json::array();
    const int n0 = o->ranks.front();
    Progress bar("bench dist runs", 2 * static_cast<int64_t>(o->ranks.size()));
    int64_t done = 0;
    for (int n : o->ranks) {
      strong.push_back(run(*o, n, o->batch_size, "strong_n" + std::to_string(n)));
      bar.update(++done);
      // At the baseline's rank count the weak-scaling run is the strong-scaling one.
      weak.push_back(n == n0 ? strong.back() : run(*o, n, o->batch_size * n / n0, "weak_n" + std::to_string(n)));
      bar.update(++done);
    }
    bar.finish();
    // Efficiency: throughput over (N / N0) times the baseline's throughput.
    for (auto* series : {&strong, &weak})
      for (auto& r : *series)
        r["scaling_efficiency"] =
            r["examples_per_second"].get<double>() /
            ((r["ranks"].get<double>() / n0) * series->front()["examples_per_second"].get<double>());
    nlohmann::json out = {
        {"model", o->model},
        {"steps", o->steps},
        {"threads_per_rank", o->threads},
        {"cores", sysconf(_SC_NPROCESSORS_ONLN)},
        {"strong_scaling", strong},
        {"weak_scaling", weak},
        {"note",
         "Gradients are all-reduced once per step (25 MB buckets): each rank hands over its full gradient "
         "(4 bytes per float32 parameter), and a ring all-reduce sends 2(N-1)/N of that per rank, so "
         "bytes per rank stay near 2x the gradient as N grows while compute per rank shrinks as 1/N at a "
         "fixed global batch: strong scaling falls with N unless the network keeps up; weak scaling "
         "(fixed per-rank batch) stays high. With N ranks on 2 cores, ranks also share cores and memory "
         "bandwidth."}};
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace bs
