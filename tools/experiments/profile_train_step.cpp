// Where a training step's time goes, op by op: the step of `blocksharp bench train` (forward,
// cross-entropy, backward, the non-finite check, global-norm clipping at 1.0, AdamW) of a built-in
// language model under LibTorch's profiler, written as a Chrome trace (open it in chrome://tracing, or
// sum it with summarize_op_profile.py: self time per op name). Our custom autograd nodes appear as
// `torch::autograd::CppNode<...>` (their backward, matrix products included); their forward is not
// recorded. With a fourth argument `finite-check`, instead: 45 steps rotating the gradients' checks
// three ways, each one's median (the A/Bs of the README's `bench train` section): LibTorch's
// isfinite(g).all() per gradient then clip_grad_norm_, all_finite (src/finite_check.h) per gradient
// then clip_grad_norm_ (train's step until 2026-12-03, fifth session), and check_and_clip_grads (one
// pass for both, then one for the scaling, as train's step now). With `checks` instead: the last two
// alone on one backward's gradients, alternating 60 times (max norm 1e-3, so both scale every time;
// the gradients are then scaled back), their medians, and how far check_and_clip_grads' gradients are
// from clip_grad_norm_'s. Not part of the build. From the repository
// root, after scripts/build.sh:
//   (cd build && LIBS=$(ninja -t commands bin/blocksharp | tail -1 | tr ' ' '\n' | grep -E '^-l|\.so|\.a$|^-Wl' \
//     | sed 's/lib\/libblocksharp_tools.a/-Wl,--start-group &/; s/lib\/libblocksharp_core.a/& -Wl,--end-group/' \
//     | tr -d '"' | tr '\n' ' ') && g++ -O2 -std=c++17 -fopenmp -I../src -I../tools -I../flows -I../optimizers \
//     -I../diagnostics -I../partitioners -I/usr/include/hdf5/serial -isystem /usr/include/torch/csrc/api/include \
//     ../tools/experiments/profile_train_step.cpp -o /tmp/profile_train_step $LIBS)
//   /tmp/profile_train_step gpt2-small-cpu 1 /tmp/step.trace   # model, threads, trace file
//   /usr/bin/python3 tools/experiments/summarize_op_profile.py /tmp/step.trace 5
//   /tmp/profile_train_step llama-small-cpu 2 - finite-check
//   /tmp/profile_train_step gpt2-small-cpu 1 - checks
#include <malloc.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_loss.h"
#include "cli_common.h"
#include "finite_check.h"
#include "optimizer_setup.h"
#include "registry.h"
#include "session.h"
#include "train_loop.h"

int main(int argc, char** argv) {
  using namespace bs;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // as the CLI's main
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const std::string model = argc > 1 ? argv[1] : "gpt2-small-cpu";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::string trace = argc > 3 ? argv[3] : "/tmp/step.trace";
  CommonOptions c;
  c.model = model;
  c.batch_size = 8;
  c.threads = threads;
  Session s = open_session(c);
  const ModelInfo info = s.net->info();
  auto gen = at::detail::createCPUGenerator(0);  // bench train's tokens
  const auto t = torch::randint(0, info.vocab, {8, info.seq_len + 1}, gen, torch::kLong);
  const Batch batch{t.slice(1, 0, info.seq_len).contiguous(), t.slice(1, 1, info.seq_len + 1).contiguous()};
  OptimizerSetup setup = optimizer_setup("adamw", s.net->named_parameters(), info, {});
  auto opt = make_optimizer("adamw", setup.inputs, default_options("adamw"));
  auto params = s.net->parameters();
  // checks: 0 LibTorch's isfinite(g).all() and clip_grad_norm_, 1 all_finite and clip_grad_norm_, 2
  // check_and_clip_grads (train's step).
  auto step = [&](int checks = 2) {
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    batch_loss(*s.net, batch, s.loss, model).backward();
    if (checks == 2) {
      if (!check_and_clip_grads(*s.net, 1.0).empty()) throw std::runtime_error("non-finite gradient");
    } else {
      for (const auto& p : params)
        if (checks == 0 ? !torch::isfinite(p.grad()).all().item<bool>() : !all_finite(p.grad()))
          throw std::runtime_error("non-finite gradient");
      torch::nn::utils::clip_grad_norm_(params, 1.0);
    }
    opt->step();
  };
  for (int i = 0; i < 3; ++i) step();
  if (argc > 4 && std::string(argv[4]) == "checks") {
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    batch_loss(*s.net, batch, s.loss, model).backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : params) grads.push_back(p.grad());
    std::vector<double> ms[2];
    for (int i = 0; i < 60; ++i) {
      const auto a = std::chrono::steady_clock::now();
      if (i % 2 == 0) {
        for (const auto& g : grads)
          if (!all_finite(g)) throw std::runtime_error("non-finite gradient");
        torch::nn::utils::clip_grad_norm_(params, 1e-3);
      } else if (!check_and_clip_grads(*s.net, 1e-3).empty()) {
        throw std::runtime_error("non-finite gradient");
      }
      ms[i % 2].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count() * 1e3);
      for (auto& g : grads) g.mul_(1e3);
    }
    for (auto& m : ms) std::sort(m.begin(), m.end());
    std::vector<torch::Tensor> before, theirs;
    for (const auto& g : grads) before.push_back(g.clone());
    torch::nn::utils::clip_grad_norm_(params, 0.5);
    for (size_t i = 0; i < grads.size(); ++i) {
      theirs.push_back(grads[i].clone());
      grads[i].copy_(before[i]);
    }
    check_and_clip_grads(*s.net, 0.5);
    double worst = 0;
    for (size_t i = 0; i < grads.size(); ++i)
      worst = std::max(worst, ((grads[i] - theirs[i]).abs().max() / theirs[i].abs().max()).item<double>());
    std::printf(
        "%s, %d thread(s): all_finite and clip_grad_norm_ %.2f ms, check_and_clip_grads %.2f ms (medians of "
        "30); clipped gradients within %.2g (relative to each tensor's largest) of clip_grad_norm_'s\n",
        model.c_str(), threads, ms[0][15], ms[1][15], worst);
    return 0;
  }
  if (argc > 4 && std::string(argv[4]) == "finite-check") {
    std::vector<double> ms[3];
    for (int i = 0; i < 45; ++i) {
      const auto a = std::chrono::steady_clock::now();
      step(i % 3);
      ms[i % 3].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count() * 1e3);
    }
    for (auto& m : ms) std::sort(m.begin(), m.end());
    std::printf(
        "%s, %d thread(s): step with isfinite(g).all() and clip_grad_norm_ %.1f ms, with all_finite and "
        "clip_grad_norm_ %.1f ms, with check_and_clip_grads %.1f ms (medians of 15)\n",
        model.c_str(), threads, ms[0][7], ms[1][7], ms[2][7]);
    return 0;
  }
  const auto a = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) step();
  std::printf("%s, %d thread(s): %.1f ms per step without the profiler; 5 steps profiled into %s\n", model.c_str(),
              threads, std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count() * 1e3 / 5,
              trace.c_str());
  const torch::autograd::profiler::RecordProfile guard(trace);
  for (int i = 0; i < 5; ++i) step();
}
