// HvpOperator. Oracle: the dense autograd Hessian (float64) of tiny models, and a central finite
// difference of the gradient; multi-batch averaging against the mean of per-batch dense Hessians.
#include <gtest/gtest.h>

#include "dense_hessian.h"
#include "errors.h"
#include "gemm.h"
#include "hvp_operator.h"
#include "spectral.h"

using namespace bs;
using namespace bs::testing_support;

namespace {
double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}
}  // namespace

class HvpModels : public ::testing::TestWithParam<std::string> {};

TEST_P(HvpModels, ProductEqualsDenseHessianTimesVector) {
  TinyHessian tiny(GetParam());
  const auto& H = tiny.H;
  auto& op = tiny.op;
  std::mt19937_64 rng(1);
  for (int k = 0; k < 3; ++k) {
    auto v = gaussian(op.size(), rng, torch::kFloat64);
    EXPECT_LT(rel(op.apply(v), torch::mv(H, v)), 1e-10) << GetParam();
  }
  EXPECT_EQ(op.n_hvp(), 3);
}

TEST_P(HvpModels, BlockViewIsTheDiagonalBlock) {
  TinyHessian tiny(GetParam());
  const auto& H = tiny.H;
  auto& op = tiny.op;
  const auto& t = op.table();
  std::vector<size_t> block = {0, t.size() - 1};
  const auto &e0 = t.at(0), &e1 = t.at(t.size() - 1);
  auto idx =
      torch::cat({torch::arange(e0.offset, e0.offset + e0.numel), torch::arange(e1.offset, e1.offset + e1.numel)});
  auto Hbb = H.index_select(0, idx).index_select(1, idx);
  std::mt19937_64 rng(2);
  auto v = gaussian(op.block_size(block), rng, torch::kFloat64);
  EXPECT_LT(rel(op.apply_block(block, v), torch::mv(Hbb, v)), 1e-10);
}

// A module's weight and bias together: the product then asks for no cotangent of the layer's input
// gradient, a case the curvature ops must handle on their own. (The attention model has no biases.)
class HvpModelsWithBiases : public ::testing::TestWithParam<std::string> {};

TEST_P(HvpModelsWithBiases, WeightAndBiasBlocksAreDiagonalBlocks) {
  TinyHessian tiny(GetParam());
  const auto& H = tiny.H;
  auto& op = tiny.op;
  const auto& t = op.table();
  std::mt19937_64 rng(3);
  int blocks = 0;
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    const auto &w = t.at(i), &bias = t.at(i + 1);
    const auto stem = w.name.substr(0, w.name.size() - std::string("weight").size());
    if (w.name.size() < 6 || w.name.substr(w.name.size() - 6) != "weight" || bias.name != stem + "bias") continue;
    auto idx = torch::arange(w.offset, bias.offset + bias.numel);
    auto v = gaussian(op.block_size({i, i + 1}), rng, torch::kFloat64);
    EXPECT_LT(rel(op.apply_block({i, i + 1}, v), torch::mv(H.index_select(0, idx).index_select(1, idx), v)), 1e-10)
        << GetParam() << " " << w.name;
    ++blocks;
  }
  EXPECT_GT(blocks, 0) << GetParam();
}

// Several directions in one pass (the rows of a matrix, a vmap batch dimension through every op's
// product pass): the whole dense Hessian in passes of 7 and 64 columns, and one block's in passes of 5.
TEST_P(HvpModels, BatchedDirectionsGiveTheDenseHessian) {
  TinyHessian tiny(GetParam());
  auto& op = tiny.op;
  const int64_t n = op.size();
  for (int64_t per_pass : {7, 64}) {
    const int64_t before = op.n_hvp();
    EXPECT_LT(rel(dense_matrix(op.as_op(), n, per_pass), tiny.H), 1e-10)
        << GetParam() << ", " << per_pass << " per pass";
    EXPECT_EQ(op.n_hvp() - before, n);
  }
  // Blocks whose products leave some of an op's cotangents undefined (a query projection alone).
  const auto& t = op.table();
  for (size_t i = 0; i < t.size(); ++i) {
    if (i != t.size() - 1 && t.at(i).name.find("q_proj.weight") == std::string::npos) continue;
    const auto idx = torch::arange(t.at(i).offset, t.at(i).offset + t.at(i).numel);
    const auto Hbb = tiny.H.index_select(0, idx).index_select(1, idx);
    EXPECT_LT(rel(dense_matrix(op.block_op({i}), t.at(i).numel, 5), Hbb), 1e-10) << GetParam() << ", " << t.at(i).name;
  }
}

// Float32 products (the default dtype; their matrix products run on oneDNN where it is loaded) against
// the float64 dense Hessian at the same, float32-representable, weights: within float32 accuracy,
// and no less accurate than the same products on LibTorch's own matrix products.
TEST_P(HvpModels, Float32ProductsOnEitherMatrixBackend) {
  Session s64 = tiny_session(GetParam()), s32 = tiny_session(GetParam(), 0, torch::kFloat32);
  {
    torch::NoGradGuard g;
    auto p64 = s64.net->parameters(), p32 = s32.net->parameters();
    ASSERT_EQ(p64.size(), p32.size());
    for (size_t i = 0; i < p64.size(); ++i) p64[i].copy_(p32[i]);
  }
  const auto b64 = tiny_batch(s64, 0), b32 = tiny_batch(s32, 0);
  const auto H = dense_hessian(*s64.net, b64, s64.loss);
  std::mt19937_64 rng(5);
  const auto v = gaussian(H.size(0), rng, torch::kFloat32);
  const auto exact = torch::mv(H, v.to(torch::kFloat64));
  std::map<gemm::Backend, double> err;
  for (auto backend : {gemm::Backend::OneDnn, gemm::Backend::LibTorch}) {
    gemm::ScopedBackend scope(backend);
    HvpOperator op(*s32.net, {b32}, s32.loss, "test");
    const auto hv = op.apply(v);
    ASSERT_EQ(hv.scalar_type(), torch::kFloat32);
    err[backend] = rel(hv.to(torch::kFloat64), exact);
  }
  EXPECT_LT(err[gemm::Backend::OneDnn], 1e-5) << GetParam();
  EXPECT_LT(err[gemm::Backend::OneDnn], 4 * err[gemm::Backend::LibTorch] + 1e-7) << GetParam();
  std::cout << GetParam() << ": float32 product, relative error oneDNN " << err[gemm::Backend::OneDnn] << ", LibTorch "
            << err[gemm::Backend::LibTorch] << "\n";
}

INSTANTIATE_TEST_SUITE_P(TinyModels, HvpModels, ::testing::Values("mlp", "attention", "gpt2"));
INSTANTIATE_TEST_SUITE_P(TinyModels, HvpModelsWithBiases, ::testing::Values("mlp", "gpt2"));

TEST(HvpOperator, FiniteDifferenceOfGradient) {
  Session s = tiny_session("gpt2");
  Batch b = tiny_batch(s, 0);
  HvpOperator op(*s.net, {b}, s.loss, "test");
  std::mt19937_64 rng(3);
  auto v = gaussian(op.size(), rng, torch::kFloat64);
  auto hv = op.apply(v);  // before the parameters are moved for the finite difference
  auto params = s.net->parameters();
  auto grad_at = [&](double h) {
    {
      torch::NoGradGuard g;
      auto parts = op.table().unflatten(v);
      for (size_t i = 0; i < params.size(); ++i) params[i].add_(parts[i], h);
    }
    auto l = compute_loss(s.net->forward(b.inputs), b.targets, s.loss);
    auto gs = torch::autograd::grad({l}, params);
    {
      torch::NoGradGuard g;
      auto parts = op.table().unflatten(v);
      for (size_t i = 0; i < params.size(); ++i) params[i].add_(parts[i], -h);
    }
    return op.table().flatten(gs);
  };
  const double h = 1e-6;
  auto fd = (grad_at(h) - grad_at(-h)) / (2 * h);
  EXPECT_LT(rel(hv, fd), 1e-7);
}

TEST(HvpOperator, SeveralBatchesAverageAndRecomputeMatches) {
  Session s = tiny_session("mlp");
  Batch b0 = tiny_batch(s, 0), b1 = tiny_batch(s, 1);
  auto H = 0.5 * (dense_hessian(*s.net, b0, s.loss) + dense_hessian(*s.net, b1, s.loss));
  HvpOperator kept(*s.net, {b0, b1}, s.loss, "test", {Curvature::Hessian, 0, true});
  HvpOperator recomputed(*s.net, {b0, b1}, s.loss, "test", {Curvature::Hessian, 0, false});
  std::mt19937_64 rng(4);
  auto v = gaussian(kept.size(), rng, torch::kFloat64);
  EXPECT_LT(rel(kept.apply(v), torch::mv(H, v)), 1e-10);
  EXPECT_LT(rel(recomputed.apply(v), torch::mv(H, v)), 1e-10);
}

TEST(HvpOperator, ParameterWithoutGradientIsAZeroBlock) {
  Session s = tiny_session("gpt2");
  Batch b = tiny_batch(s, 0);
  // Positions beyond the batch's sequence length never receive a gradient: feed shorter sequences.
  b.inputs = b.inputs.narrow(1, 0, 2);
  b.targets = b.targets.narrow(1, 0, 2);
  HvpOperator op(*s.net, {b}, s.loss, "test");
  const size_t wpe = op.table().index_of("wpe.weight");
  std::mt19937_64 rng(5);
  auto v = gaussian(op.size(), rng, torch::kFloat64);
  auto hv = op.table().unflatten(op.apply(v));
  EXPECT_GT(hv[wpe].narrow(0, 0, 2).abs().sum().item<double>(), 0);
  EXPECT_EQ(hv[wpe].narrow(0, 2, 3).abs().sum().item<double>(), 0);
  // An entirely unused tensor: a block of zeros, not a crash.
  auto hb = op.apply_block({wpe}, gaussian(op.table().at(wpe).numel, rng, torch::kFloat64));
  EXPECT_TRUE(torch::isfinite(hb).all().item<bool>());
}

TEST(HvpOperator, NonFiniteLossNamesTheBatch) {
  Session s = tiny_session("mlp");
  Batch b = tiny_batch(s, 0);
  b.inputs[0][0][0][0] = std::numeric_limits<double>::quiet_NaN();
  try {
    HvpOperator op(*s.net, {b}, s.loss, "mnist");
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("batch 0"), std::string::npos) << e.what();
  }
}

TEST(HvpOperator, DirectionalSharpnessIsRayleighQuotient) {
  Session s = tiny_session("mlp");
  Batch b = tiny_batch(s, 0);
  auto H = dense_hessian(*s.net, b, s.loss);
  HvpOperator op(*s.net, {b}, s.loss, "test");
  std::mt19937_64 rng(6);
  auto u = gaussian(op.size(), rng, torch::kFloat64);
  const double expected = u.dot(torch::mv(H, u)).item<double>() / u.dot(u).item<double>();
  EXPECT_NEAR(directional_sharpness(op, u), expected, 1e-10 * std::abs(expected));
  EXPECT_THROW(directional_sharpness(op, torch::zeros_like(u)), UserError);
}
