// Test oracle: the dense Hessian of a tiny float64 model, row by row from autograd (d g_i / dw) with
// LibTorch's own double backward (NativeSecondOrder), independent of HvpOperator's products and of
// the models' curvature_ops.
#pragma once
#include <gtest/gtest.h>

#include "h5io.h"
#include "hvp_operator.h"
#include "models/curvature_ops.h"
#include "models/model_zoo.h"
#include "session.h"

namespace bs::testing_support {

inline torch::Tensor dense_hessian(Network& net, const Batch& batch, LossKind loss) {
  ops::NativeSecondOrder native;
  auto params = net.parameters();
  auto l = compute_loss(net.forward(batch.inputs), batch.targets, loss);
  auto grads = torch::autograd::grad({l}, params, {}, true, true, true);
  std::vector<torch::Tensor> flat;
  for (size_t i = 0; i < params.size(); ++i)
    flat.push_back(grads[i].defined() ? grads[i].reshape({-1}) : torch::zeros({params[i].numel()}, torch::kFloat64));
  auto g = torch::cat(flat);
  const int64_t n = g.numel();
  auto H = torch::zeros({n, n}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    if (!g[i].requires_grad()) continue;
    auto row = torch::autograd::grad({g[i]}, params, {}, true, false, true);
    int64_t off = 0;
    for (size_t j = 0; j < params.size(); ++j) {
      if (row[j].defined()) H[i].narrow(0, off, params[j].numel()).copy_(row[j].reshape({-1}));
      off += params[j].numel();
    }
  }
  return H;
}

// Token data in the tiny vocabulary (12), 5 tokens per row, as an .h5 file.
inline std::string token_file() {
  const std::string path = ::testing::TempDir() + "/tiny_tokens.h5";
  torch::manual_seed(123);
  auto x = torch::randint(0, 12, {16, 5}, torch::kLong);
  auto y = torch::randint(0, 12, {16, 5}, torch::kLong);
  H5Output out(path);
  out.write("inputs", x);
  out.write("targets", y);
  out.commit();
  return path;
}

// Tiny float64 sessions named in issue 3: an MLP, a one-layer attention model, gpt2-tiny cut small.
inline Session tiny_session(const std::string& which, uint64_t seed = 0, torch::Dtype dtype = torch::kFloat64) {
  CommonOptions o;
  o.dtype = dtype;
  o.seed = seed;
  o.batch_size = 3;
  if (which == "mlp") {
    o.model = "mlp-mnist";
    o.data = "mnist";
    o.sets = {"n_layer=1", "hidden=3"};
  } else if (which == "attention") {
    o.data = token_file();
    o.model = "llama-tiny";
    o.sets = {"n_layer=1", "dim=8", "n_heads=2", "n_kv_heads=1", "vocab=12", "seq_len=5", "ffn=4"};
  } else {
    o.data = token_file();
    o.model = "gpt2-tiny";
    o.sets = {"n_layer=1", "dim=8", "n_heads=2", "vocab=12", "seq_len=5", "ffn=8"};
  }
  Session s = open_session(o);
  return s;
}

inline Batch tiny_batch(const Session& s, int64_t i) { return s.train_batch(i); }

// A tiny session, its first batch, the dense Hessian there (the oracle) and the operator under test.
struct TinyHessian {
  explicit TinyHessian(const std::string& which)
      : s(tiny_session(which)),
        b(tiny_batch(s, 0)),
        H(dense_hessian(*s.net, b, s.loss)),
        op(*s.net, {b}, s.loss, "test") {}
  Session s;
  Batch b;
  torch::Tensor H;
  HvpOperator op;
};

// The exact trace of each diagonal block of H, the blocks as `table` lays them out.
inline std::vector<double> block_traces(const torch::Tensor& H, const ParamTable& table) {
  const auto diag = H.diagonal();
  std::vector<double> traces;
  for (size_t i = 0; i < table.size(); ++i)
    traces.push_back(diag.narrow(0, table.at(i).offset, table.at(i).numel).sum().item<double>());
  return traces;
}

}  // namespace bs::testing_support
