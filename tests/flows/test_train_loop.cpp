// Training loop. Oracles: an uninterrupted run (resume must reproduce it bit for bit) and the
// loss on the batches trained on (it must fall).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "blockwise_lr.h"
#include "errors.h"
#include "h5io.h"
#include "session.h"
#include "spectral.h"
#include "train_loop.h"

using namespace bs;

namespace {

CommonOptions tiny(const std::string& out) {
  CommonOptions o;
  o.model = "gpt2-tiny";
  o.sets = {"n_layer=1", "dim=32", "n_heads=2", "seq_len=16"};
  o.batch_size = 4;
  o.seed = 3;
  o.out = testing::TempDir() + "/" + out;
  return o;
}

TrainOptions steps(int64_t n) {
  TrainOptions t;
  t.steps = n;
  t.eval_batches = 2;
  t.schedule.warmup = 2;
  return t;
}

}  // namespace

TEST(TrainLoop, ResumeIsBitIdenticalToUninterruptedRun) {
  Session full = open_session(tiny("train_full"));
  train(full, full.opt.out, steps(8));

  Session first = open_session(tiny("train_resume"));
  TrainOptions part = steps(8);
  part.stop_at = 5;
  part.checkpoint_every = 5;
  train(first, first.opt.out, part);
  Session second = open_session(tiny("train_resume"));
  TrainOptions rest = steps(8);
  rest.resume = true;
  train(second, second.opt.out, rest);

  auto a = full.net->named_parameters(), b = second.net->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  // final_params.h5 holds one dataset per parameter name, equal to the trained values.
  auto saved = read_h5_dataset(tiny("train_resume").out + "/final_params.h5", a[0].first, "test");
  EXPECT_TRUE(torch::equal(saved.to(torch::kFloat32), a[0].second));
}

TEST(TrainLoop, LossFallsOnTinyModel) {
  Session s = open_session(tiny("train_falls"));
  auto before = batch_loss(*s.net, s.train_batch(0), s.loss, "brown").item<double>();
  TrainOptions t = steps(30);
  t.optim.lr = 3e-3;
  auto r = train(s, s.opt.out, t);
  EXPECT_LT(r.final_train_loss, before - 0.5);
}

TEST(TrainLoop, InvalidOptionsAreRejectedBeforeWork) {
  Session s = open_session(tiny("train_bad"));
  TrainOptions t = steps(0);
  EXPECT_THROW(train(s, s.opt.out, t), UserError);
  t = steps(3);
  t.optim.beta2 = 1.0;
  EXPECT_THROW(train(s, s.opt.out, t), UserError);
  t = steps(3);
  t.trace.every = -1;  // refused before the output folder is made
  const std::string never = s.opt.out + "/never-made";
  std::filesystem::remove_all(never);
  EXPECT_THROW(train(s, never, t), UserError);
  EXPECT_FALSE(std::filesystem::exists(never));
  t = steps(3);
  t.resume = true;
  EXPECT_THROW(train(s, s.opt.out, t), UserError);  // no checkpoint in this folder
}

// Oracle: Adam's first step moves every coordinate with |g| >> eps by exactly lr (m/sqrt(v) = sign(g)),
// so with blockwise_lr.json each tensor must move by lr * its group's multiplier.
TEST(TrainLoop, BlockwiseConfigScalesEachGroupsLearningRate) {
  CommonOptions o = tiny("train_blockwise");
  o.dtype = torch::kFloat64;
  Session s = open_session(o);
  const ParamTable table(s.net->named_parameters());
  std::vector<double> traces(table.size(), 1.0);
  const std::string cfg = o.out + "_bw.json";
  write_json_atomic(cfg, blockwise_lr_config(table, s.net->info(), traces, LrPolicy{}, {}));
  std::vector<torch::Tensor> before;
  for (auto& p : s.net->parameters()) before.push_back(p.detach().clone());
  TrainOptions t = steps(1);
  t.schedule.kind = ScheduleKind::Constant;
  t.schedule.warmup = 0;
  t.grad_clip = 0;
  t.optim.weight_decay = 0;
  t.optim.lr = 1e-3;
  t.configs = {cfg};
  train(s, s.opt.out, t);
  auto after = s.net->parameters();
  for (size_t i = 0; i < table.size(); ++i) {
    const double expected = 1e-3 * paper_multiplier(lr_group(table.at(i).name, {}));
    const double moved = (after[i] - before[i]).abs().max().item<double>();
    // k_proj's bias gets no gradient (softmax is shift invariant): it must not move at all.
    if (table.at(i).name.find("k_proj.bias") != std::string::npos) {
      EXPECT_LT(moved, 1e-12);
      continue;
    }
    // |g| / (|g| + eps) < 1 leaves a relative shortfall of order eps / |g|.
    EXPECT_NEAR(moved, expected, 1e-3 * expected) << table.at(i).name;
  }
}

// Every optimizer, driven by the training loop on a tiny model: the loss on the trained batches falls
// (oracle: the initial loss) and a resumed run matches the uninterrupted one bit for bit.
TEST(TrainLoop, EveryOptimizerTrainsAndResumes) {
  for (const char* name : {"adamw", "adam-mini", "sgd-sai", "apollo", "apollo-mini", "galore", "frugal", "adapm",
                           "sgd-clip", "adam-clip"}) {
    CommonOptions o = tiny(std::string("train_opt_") + name);
    Session s = open_session(o);
    const double before = batch_loss(*s.net, s.train_batch(0), s.loss, "brown").item<double>();
    TrainOptions t = steps(12);
    t.optimizer = name;
    t.optim = default_options(name);
    t.optim.lr = std::string(name) == "sgd-clip" ? 0.3 : std::string(name) == "sgd-sai" ? 1e-3 : 3e-3;
    t.projection.rank = 4;
    t.projection.update_gap = 5;  // also frugal's reselection period
    auto r = train(s, s.opt.out, t);
    EXPECT_LT(r.final_train_loss, before) << name;

    Session a = open_session(tiny(std::string("train_optr_") + name));
    TrainOptions first = t;
    first.stop_at = 7;
    train(a, a.opt.out, first);
    Session b = open_session(tiny(std::string("train_optr_") + name));
    TrainOptions rest = t;
    rest.resume = true;
    train(b, b.opt.out, rest);
    auto x = s.net->parameters(), y = b.net->parameters();
    for (size_t i = 0; i < x.size(); ++i) EXPECT_TRUE(torch::equal(x[i], y[i])) << name << " param " << i;
  }
}

// Oracle: the batch made non-finite on purpose is the one skipped (skip) or named (abort).
TEST(TrainLoop, NonFiniteStepsAreSkippedOrAbort) {
  const std::string data = testing::TempDir() + "/nan_rows.h5";
  {
    auto x = torch::randn({12, 784}, torch::kFloat64);
    x.narrow(0, 4, 4).fill_(std::numeric_limits<double>::quiet_NaN());  // batch 1 of size 4
    H5Output out(data);
    out.write("inputs", x);
    out.write("targets", torch::randint(0, 10, {12}, torch::kLong));
    out.commit();
  }
  CommonOptions o;
  o.model = "mlp-mnist";
  o.data = data;
  o.batch_size = 4;
  o.out = testing::TempDir() + "/train_nan";
  Session s = open_session(o);
  TrainOptions t = steps(3);
  t.eval_batches = 0;
  auto r = train(s, s.opt.out, t);
  EXPECT_EQ(r.skipped_steps, 1);
  for (auto& p : s.net->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  Session s2 = open_session(o);
  t.on_nonfinite = OnNonfinite::Abort;
  try {
    train(s2, s2.opt.out, t);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos) << e.what();
  }
}

// The tracer's probe batch: the first `rows` rows of the first validation batch (else training batch).
static Batch tracer_probe(const Session& s, int64_t rows) {
  Batch probe = s.data->n_val_batches() > 0 ? s.val_batch(0) : s.train_batch(0);
  probe.inputs = probe.inputs.narrow(0, 0, rows);
  probe.targets = probe.targets.narrow(0, 0, rows);
  return probe;
}

// A float64 model small enough for a dense Hessian, and 6 steps traced every 3 with a tight Lanczos
// tolerance: the setting of the tracer's dense oracles.
static CommonOptions dense_trace_model(const std::string& out) {
  CommonOptions o = tiny(out);
  o.dtype = torch::kFloat64;
  o.sets = {"n_layer=1", "dim=8", "n_heads=2", "seq_len=4", "vocab=256"};
  return o;
}

static TrainOptions dense_trace_run() {
  TrainOptions t = steps(6);
  t.trace.every = 3;
  t.trace.probes = 3;
  t.trace.tol = 1e-10;
  return t;
}

// Oracle: the last record is measured at the final parameters, so its lambda_max equals the dense
// eigendecomposition of the probe batch's Hessian there; tracing never changes the trained parameters.
TEST(TrainLoop, TraceRecordsMatchDenseHessianAndLeaveTrainingUnchanged) {
  const CommonOptions o = dense_trace_model("train_trace");
  Session traced = open_session(o);
  const TrainOptions t = dense_trace_run();
  train(traced, traced.opt.out, t);
  auto lmax = read_h5_dataset(o.out + "/trace.h5", "sharpness/lambda_max", "test");
  auto st = read_h5_dataset(o.out + "/trace.h5", "step", "test");
  ASSERT_EQ(st.numel(), 2);
  EXPECT_EQ(st[1].item<int64_t>(), 6);
  HvpOperator H(*traced.net, {tracer_probe(traced, t.trace.batch_size)}, traced.loss, "brown");
  const double exact = dense_eigs(H.as_op(), H.size()).values.front();
  EXPECT_NEAR(lmax[1].item<double>(), exact, 1e-7 * std::abs(exact));

  CommonOptions plain_opt = o;
  plain_opt.out = o.out + "_plain";
  Session plain = open_session(plain_opt);
  TrainOptions u = steps(6);
  train(plain, plain.opt.out, u);
  auto a = traced.net->parameters(), b = plain.net->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
}

// Oracle for --trace-preconditioned: at the last record (the final parameters and the checkpointed AdamW
// state) D = lr / (sqrt(v / (1 - beta2^t)) + eps) from the checkpoint's exp_avg_sq, the dense Hessian of the
// probe batch, and lambda_max(D^1/2 H D^1/2) / lr from its eigendecomposition; the threshold 38 / lr.
TEST(TrainLoop, PreconditionedSharpnessMatchesDensePreconditionedHessian) {
  const CommonOptions o = dense_trace_model("train_trace_pre");
  Session s = open_session(o);
  TrainOptions t = dense_trace_run();
  t.trace.preconditioned = true;
  t.checkpoint_every = 6;  // the final optimizer state, for the oracle
  train(s, s.opt.out, t);
  const std::string trace = o.out + "/trace.h5";
  auto pre = read_h5_dataset(trace, "sharpness/preconditioned_lambda_max", "test");
  auto thr = read_h5_dataset(trace, "sharpness/preconditioned_threshold", "test");
  auto lr = read_h5_dataset(trace, "lr", "test");
  ASSERT_EQ(pre.numel(), 2);
  const double eta = lr[1].item<double>();
  EXPECT_NEAR(thr[1].item<double>(), (2 + 2 * 0.9) / (1 - 0.9) / eta, 1e-12 / eta);
  const std::string ckpt = o.out + "/checkpoint.h5";
  const int64_t step = read_h5_dataset(ckpt, "optimizer/step", "test").item<int64_t>();
  ASSERT_EQ(step, 6);
  const double bc2 = 1 - std::pow(t.optim.beta2, static_cast<double>(step));
  std::vector<torch::Tensor> d;
  for (const auto& [name, p] : s.net->named_parameters()) {
    auto v = read_h5_dataset(ckpt, "optimizer/" + name + "/exp_avg_sq", "test").to(torch::kFloat64).reshape({-1});
    d.push_back(eta / ((v / bc2).sqrt() + t.optim.eps));
  }
  const auto root = torch::cat(d).sqrt();
  HvpOperator H(*s.net, {tracer_probe(s, t.trace.batch_size)}, s.loss, "brown");
  const auto dense = dense_matrix(H.as_op(), H.size());
  const auto A = root.unsqueeze(1) * dense * root.unsqueeze(0);
  const double exact = torch::linalg_eigvalsh(A, "L").max().item<double>() / eta;
  EXPECT_NEAR(pre[1].item<double>(), exact, 1e-7 * std::abs(exact));
}

TEST(TrainLoop, PreconditionedSharpnessNeedsADiagonalPreconditioner) {
  CommonOptions o = tiny("train_trace_pre_bad");
  Session s = open_session(o);
  TrainOptions t = steps(2);
  t.trace.every = 1;
  t.trace.preconditioned = true;
  t.optimizer = "galore";
  try {
    train(s, s.opt.out, t);
    FAIL() << "galore has no diagonal preconditioner";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("trace_preconditioned: optimizer galore", 0), 0u) << e.what();
    EXPECT_EQ(e.message.render(flag_of).rfind("--trace-preconditioned: optimizer galore", 0), 0u) << e.what();
  }
}

// The step's gradient pass on a model with tied weights (gpt2-tiny: wte once, as named_parameters()
// lists it): the first non-finite gradient is named, in named_parameters()' order, and nothing is
// scaled; finite gradients are clipped as LibTorch's clip_grad_norm_ clips them (up to its float32
// norms' last bits), and left as they are where their norm is below the maximum.
TEST(TrainLoop, CheckAndClipGradsNamesTheFirstNonFiniteAndClipsAsLibTorch) {
  Session s = open_session(tiny("check_clip"));
  const auto named = s.net->named_parameters();
  ASSERT_GT(named.size(), 4U);
  torch::manual_seed(5);
  auto fill = [&] {
    std::vector<torch::Tensor> copies;
    for (const auto& [name, p] : named) {
      p.mutable_grad() = torch::randn_like(p);
      copies.push_back(p.grad().clone());
    }
    return copies;
  };
  auto original = fill();
  named[3].second.grad().view({-1})[0] = std::numeric_limits<float>::quiet_NaN();
  named[4].second.grad().view({-1})[0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(check_and_clip_grads(*s.net, 1.0), named[3].first);
  for (size_t i = 5; i < named.size(); ++i) EXPECT_TRUE(torch::equal(named[i].second.grad(), original[i]));

  original = fill();
  std::vector<torch::Tensor> params;
  for (size_t i = 0; i < named.size(); ++i) {
    auto p = torch::zeros_like(original[i]).requires_grad_();
    p.mutable_grad() = original[i].clone();
    params.push_back(p);
  }
  const double norm = torch::nn::utils::clip_grad_norm_(params, 1.0);
  ASSERT_GT(norm, 1.0);
  EXPECT_EQ(check_and_clip_grads(*s.net, 1.0), "");
  double sum = 0;
  for (size_t i = 0; i < named.size(); ++i) {
    EXPECT_TRUE(torch::allclose(named[i].second.grad(), params[i].grad(), 1e-5, 0)) << named[i].first;
    sum += named[i].second.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  }
  EXPECT_NEAR(std::sqrt(sum), 1.0, 1e-6);
  const auto clipped = named[0].second.grad().clone();
  EXPECT_EQ(check_and_clip_grads(*s.net, 2.0), "");  // norm 1 < 2: untouched
  EXPECT_TRUE(torch::equal(named[0].second.grad(), clipped));
}
