// Oracles, float64: LibTorch's own ops and their derivatives (NativeSecondOrder) for the value, the
// gradient and a Hessian-vector product (double backward through a retained gradient graph, as
// HvpOperator does); a central finite difference of that product for the third derivative (LibTorch
// 1.13's own third derivative of layer_norm with respect to its input disagrees with finite
// differences, while ours agrees).
#include <gtest/gtest.h>

#include <optional>

#include <functional>

#include "models/curvature_ops.h"
#include "models/curvature_ops_detail.h"
#include "models/exp_poly.h"
#include "models/row_kernels.h"
#include "simd_loop.h"

namespace bs {
namespace {

using Inputs = std::vector<torch::Tensor>;
using Op = std::function<torch::Tensor(const Inputs&)>;

struct Derivatives {
  torch::Tensor value;
  Inputs grad, hvp, third;
};

// A nonlinear scalar of the op's output, so that every derivative order is exercised, with the
// product's vector v and the third derivative's weights w (fixed by the seed).
std::tuple<torch::Tensor, torch::Tensor, Inputs, Inputs> problem(const Op& op, const Inputs& leaves) {
  torch::manual_seed(7);
  auto y = op(leaves);
  // randn of the shape, not randn_like: an op may lay its output out differently from LibTorch's.
  auto loss = (y * torch::randn(y.sizes(), y.options())).sum() + (y * y * y).sum() / 3;
  Inputs v, w;
  for (const auto& x : leaves) v.push_back(torch::randn_like(x));
  for (const auto& x : leaves) w.push_back(torch::randn_like(x));
  return {y, loss, v, w};
}

Derivatives derivatives(const Op& op, const Inputs& leaves, bool native) {
  std::optional<ops::NativeSecondOrder> guard;
  if (native) guard.emplace();
  auto [y, loss, v, w] = problem(op, leaves);
  Derivatives d;
  d.value = y.detach();
  auto g = torch::autograd::grad({loss}, leaves, {}, true, true);
  for (const auto& t : g) d.grad.push_back(t.detach());
  // The product pass runs twice, as HvpOperator's products do on one retained graph.
  torch::autograd::grad(g, leaves, v, true, false);
  auto hv = torch::autograd::grad(g, leaves, v, true, true);
  for (const auto& t : hv) d.hvp.push_back(t.detach());
  torch::Tensor s = torch::zeros({}, torch::kFloat64);
  for (size_t i = 0; i < hv.size(); ++i) s = s + (hv[i] * w[i]).sum();
  for (const auto& t : torch::autograd::grad({s}, leaves, {}, false, false, true))
    d.third.push_back(t.defined() ? t : torch::zeros({}, torch::kFloat64));
  return d;
}

double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-300, b.abs().max().item<double>());
}

// The largest |got - want| in float32 half-ulps (2^-24) of scale, elementwise.
double half_ulps(const torch::Tensor& got, const torch::Tensor& want, const torch::Tensor& scale) {
  return ((got.to(torch::kFloat64) - want).abs() / scale.abs().clamp_min(1e-300)).max().item<double>() /
         std::ldexp(1.0, -24);
}

// run() in both compiled variants of the row kernels (simd_loop.h) at 1 and 3 threads, the settings set
// back after: every run's tensors must carry the first run's bit patterns. Returns the first run's.
std::vector<torch::Tensor> same_bits_in_every_variant(const std::function<std::vector<torch::Tensor>()>& run) {
  const int threads = at::get_num_threads();
  std::vector<std::vector<torch::Tensor>> outs;
  for (const LoopVariant variant : {LoopVariant::widest, LoopVariant::baseline}) {
    for (const int t : {1, 3}) {
      set_loop_variant(variant);
      at::set_num_threads(t);
      outs.push_back(run());
    }
  }
  set_loop_variant(LoopVariant::widest);
  at::set_num_threads(threads);
  for (size_t i = 1; i < outs.size(); ++i)
    for (size_t k = 0; k < outs[0].size(); ++k) {
      const auto bits = outs[0][k].scalar_type() == torch::kFloat32 ? torch::kInt32 : torch::kInt64;
      EXPECT_TRUE(torch::equal(outs[i][k].view(bits), outs[0][k].view(bits))) << "run " << i << ", tensor " << k;
    }
  return outs[0];
}

// <w, H(x + e d) v> for the leaves moved by e along d (v, w, d fixed by their seeds).
double product_along(const Op& op, const Inputs& leaves, const Inputs& d, double e) {
  Inputs moved;
  for (size_t i = 0; i < leaves.size(); ++i) moved.push_back((leaves[i] + e * d[i]).detach().requires_grad_(true));
  auto [y, loss, v, w] = problem(op, moved);
  auto g = torch::autograd::grad({loss}, moved, {}, true, true);
  auto hv = torch::autograd::grad(g, moved, v, true, false);
  double s = 0;
  for (size_t i = 0; i < hv.size(); ++i) s += (hv[i] * w[i]).sum().item<double>();
  return s;
}

// Largest relative differences from LibTorch's ops over all inputs, and the third derivative along a
// random direction beside its central finite difference.
struct Comparison {
  double value = 0, grad = 0, hvp = 0, third = 0, third_fd = 0;
};

Comparison compare_with_libtorch(const Op& op, const Inputs& leaves) {
  const auto fast = derivatives(op, leaves, false), ref = derivatives(op, leaves, true);
  Comparison c;
  c.value = rel(fast.value, ref.value);
  for (size_t i = 0; i < leaves.size(); ++i) {
    c.grad = std::max(c.grad, rel(fast.grad[i], ref.grad[i]));
    c.hvp = std::max(c.hvp, rel(fast.hvp[i], ref.hvp[i]));
  }
  torch::manual_seed(11);
  Inputs d;
  for (size_t i = 0; i < leaves.size(); ++i) {
    d.push_back(torch::randn_like(leaves[i]));
    if (fast.third[i].numel() > 1) c.third += (fast.third[i] * d[i]).sum().item<double>();
  }
  const double h = 1e-5;
  c.third_fd = (product_along(op, leaves, d, h) - product_along(op, leaves, d, -h)) / (2 * h);
  return c;
}

torch::Tensor leaf(std::vector<int64_t> shape, double scale = 1.0) {
  return (torch::randn(shape, torch::kFloat64) * scale).requires_grad_(true);
}

struct OpCase {
  std::string name;
  Op op;
  std::function<Inputs()> leaves;
};

class CurvatureOps : public ::testing::TestWithParam<OpCase> {};

TEST_P(CurvatureOps, MatchesLibTorchAndFiniteDifferences) {
  torch::manual_seed(1);
  const auto c = compare_with_libtorch(GetParam().op, GetParam().leaves());
  EXPECT_LT(c.value, 1e-15);
  EXPECT_LT(c.grad, 1e-13);
  EXPECT_LT(c.hvp, 1e-12);
  EXPECT_NE(c.third, 0.0);
  EXPECT_NEAR(c.third, c.third_fd, 1e-6 * std::max(1.0, std::abs(c.third_fd)));
}

INSTANTIATE_TEST_SUITE_P(
    Ops, CurvatureOps,
    ::testing::Values(
        OpCase{"swiglu", [](const Inputs& x) { return ops::swiglu(x[0], x[1]); },
               [] {
                 return Inputs{leaf({3, 7}, 2.0), leaf({3, 7})};
               }},
        OpCase{"linear_without_bias", [](const Inputs& x) { return torch::tanh(ops::linear(x[0], x[1], {})); },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({5, 4})};
               }},
        OpCase{"linear", [](const Inputs& x) { return torch::tanh(ops::linear(x[0], x[1], x[2])); },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({5, 4}), leaf({5})};
               }},
        // q, k, v (or gate, up) of one input as one stacked product, outputs of unequal widths.
        OpCase{
            "stacked_linear",
            [](const Inputs& x) {
              return torch::tanh(torch::cat(ops::linears(x[0], {x[1], x[2], x[3]}, {x[4], x[5], x[6]}), -1));
            },
            [] {
              return Inputs{leaf({2, 3, 4}), leaf({5, 4}), leaf({2, 4}), leaf({3, 4}), leaf({5}), leaf({2}), leaf({3})};
            }},
        OpCase{"stacked_linear_without_bias",
               [](const Inputs& x) {
                 const auto y = ops::linears(x[0], {x[1], x[2]}, {});
                 return torch::tanh(y[0]) * y[1];
               },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({6, 4}), leaf({6, 4})};
               }},
        OpCase{"gelu_mlp", [](const Inputs& x) { return ops::gelu_mlp(x[0], x[1], x[2], x[3], x[4]); },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({6, 4}, 1.5), leaf({6}), leaf({5, 6}), leaf({5})};
               }},
        // A residual stream joining the layer's product (GPT-2's o_proj and MLP).
        OpCase{"linear_residual",
               [](const Inputs& x) { return torch::tanh(ops::linear_residual(x[3], x[0], x[1], x[2])); },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({5, 4}), leaf({5}), leaf({2, 3, 5})};
               }},
        OpCase{"linear_residual_without_bias",
               [](const Inputs& x) { return torch::tanh(ops::linear_residual(x[2], x[0], x[1], {})); },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({5, 4}), leaf({2, 3, 5})};
               }},
        OpCase{"gelu_mlp_residual",
               [](const Inputs& x) {
                 const auto y = ops::gelu_mlp_residual(x[5], x[0], x[1], x[2], x[3], x[4]);
                 return y * x[5];
               },
               [] {
                 return Inputs{leaf({2, 3, 4}), leaf({6, 4}, 1.5), leaf({6}), leaf({5, 6}), leaf({5}), leaf({2, 3, 5})};
               }},
        OpCase{"layer_norm", [](const Inputs& x) { return ops::layer_norm(x[0], x[1], x[2], 1e-5); },
               [] {
                 return Inputs{leaf({2, 3, 6}), leaf({6}), leaf({6})};
               }},
        OpCase{"rms_norm", [](const Inputs& x) { return ops::rms_norm(x[0], x[1], 1e-6); },
               [] {
                 return Inputs{leaf({2, 3, 6}), leaf({6})};
               }},
        // A [B, T, H, d] projection seen as [B, H, T, d], as LLaMA rotates q and k.
        OpCase{"rope",
               [](const Inputs& x) {
                 const auto f = torch::outer(torch::arange(5, torch::kFloat64), torch::tensor({1.0, 0.1, 0.01}));
                 return torch::tanh(ops::rope(x[0].transpose(1, 2), f.cos(), f.sin()));
               },
               [] {
                 return Inputs{leaf({2, 5, 2, 6})};
               }},
        // q, k, v as the models make them: [B, T, H, d] projections seen as [B, H, T, d] (not contiguous).
        OpCase{"causal_attention",
               [](const Inputs& x) {
                 return ops::causal_attention(x[0].transpose(1, 2), x[1].transpose(1, 2), x[2].transpose(1, 2));
               },
               [] {
                 return Inputs{leaf({2, 5, 2, 3}), leaf({2, 5, 2, 3}), leaf({2, 5, 2, 3})};
               }},
        // Grouped-query: 6 query heads on 2 key/value heads (oracle: LibTorch's ops on repeated heads).
        OpCase{"grouped_query_attention",
               [](const Inputs& x) {
                 return ops::causal_attention(x[0].transpose(1, 2), x[1].transpose(1, 2), x[2].transpose(1, 2));
               },
               [] {
                 return Inputs{leaf({2, 5, 6, 3}), leaf({2, 5, 2, 3}), leaf({2, 5, 2, 3})};
               }}),
    [](const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; });

// A training step's backward (no graph kept) through GPT-2's MLP: dh from the forward's gelu(h) without
// a second tanh. Oracle: LibTorch's gelu / gelu_backward graph (NativeSecondOrder), in float64 to 1e-13
// and in float32 to float32 rounding, with pre-activations spread from -30 to 30 and exact zeros.
TEST(GeluMlp, FirstOrderGradientMatchesLibTorch) {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(5);
    auto x = (torch::randn({3, 7, 4}, dtype) * 4).requires_grad_(true);
    auto W1 = (torch::randn({16, 4}, dtype) * 2).requires_grad_(true);
    auto b1 = torch::randn({16}, dtype);
    b1[0] = -30.0;  // deep in the flat tail (tanh rounds to -1)
    b1[1] = 30.0;   // and the linear one
    auto W2 = torch::randn({5, 16}, dtype).requires_grad_(true), b2 = torch::randn({5}, dtype).requires_grad_(true);
    {
      torch::NoGradGuard g;
      W1[2].zero_();  // h exactly 0 in a column: s = 1 there
      b1[2] = 0.0;
    }
    b1.requires_grad_(true);
    const std::vector<torch::Tensor> leaves = {x, W1, b1, W2, b2};
    auto grads = [&](bool native) {
      std::optional<ops::NativeSecondOrder> guard;
      if (native) guard.emplace();
      const auto y = ops::gelu_mlp(x, W1, b1, W2, b2);
      return torch::autograd::grad({(y * y).sum()}, leaves, {}, false, false);
    };
    const auto fast = grads(false), ref = grads(true);
    const double tol = dtype == torch::kFloat64 ? 1e-13 : 3e-6;
    for (size_t i = 0; i < leaves.size(); ++i) EXPECT_LT(rel(fast[i], ref[i]), tol) << "leaf " << i << " " << dtype;
  }
}

// A training step through GPT-2's residual joins: in float32 the product accumulates into rows of
// res + b. Oracle: res + LibTorch's linear (NativeSecondOrder), float64 to 1e-13 and float32 to its
// rounding, values and first-order gradients (res's gradient is the output's).
TEST(LinearResidual, ValueAndFirstOrderGradientMatchLibTorch) {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(7);
    auto t = [&](std::vector<int64_t> shape) { return torch::randn(shape, dtype).requires_grad_(true); };
    const std::vector<torch::Tensor> leaves = {t({3, 7, 16}), t({5, 16}),  t({5}),  t({3, 7, 5}), t({24, 16}),
                                               t({24}),       t({16, 24}), t({16}), t({3, 7, 16})};
    auto run = [&](bool native) {
      std::optional<ops::NativeSecondOrder> guard;
      if (native) guard.emplace();
      const auto& l = leaves;
      const auto y1 = ops::linear_residual(l[3], l[0], l[1], l[2]);
      const auto y2 = ops::gelu_mlp_residual(l[8], l[0], l[4], l[5], l[6], l[7]);
      const auto y3 = ops::linear_residual(l[3], l[0], l[1], {});  // without a bias (LLaMA's)
      const auto loss = (y1 * y1 * y1).sum() + (y2 * torch::tanh(y2)).sum() + (y3 * y3).sum();
      auto g = torch::autograd::grad({loss}, leaves, {}, false, false);
      g.push_back(y1.detach());
      g.push_back(y2.detach());
      g.push_back(y3.detach());
      return g;
    };
    const auto fast = run(false), ref = run(true);
    // float32: the outputs' roundings (res + b rounded first) pass through the loss's derivatives, a few
    // ulps of its largest value.
    const double tol = dtype == torch::kFloat64 ? 1e-13 : 1e-5;
    for (size_t i = 0; i < fast.size(); ++i) EXPECT_LT(rel(fast[i], ref[i]), tol) << "output " << i << " " << dtype;
  }
}

// A training step's backward (no graph kept) through stacked products: one product for dx over every
// output and the stacked dW cut into the weights' gradients. Oracle: LibTorch's linear per weight
// (NativeSecondOrder), float64 to 1e-13, float32 to its rounding; one output left unused (its
// gradient is zero).
TEST(StackedLinear, FirstOrderGradientMatchesLibTorch) {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(6);
    std::vector<torch::Tensor> leaves = {torch::randn({3, 7, 8}, dtype)};
    for (int64_t rows : {8, 4, 4}) leaves.push_back(torch::randn({rows, 8}, dtype));
    for (int64_t rows : {8, 4, 4}) leaves.push_back(torch::randn({rows}, dtype));
    for (auto& t : leaves) t.requires_grad_(true);
    for (bool use_third : {true, false}) {
      auto grads = [&](bool native) {
        std::optional<ops::NativeSecondOrder> guard;
        if (native) guard.emplace();
        const auto y = ops::linears(leaves[0], {leaves[1], leaves[2], leaves[3]}, {leaves[4], leaves[5], leaves[6]});
        auto loss = (y[0] * y[0]).sum() + (y[1] * torch::tanh(y[0].narrow(-1, 0, 4))).sum();
        if (use_third) loss = loss + (y[2] * y[2] * y[2]).sum();
        return torch::autograd::grad({loss}, leaves, {}, false, false, /*allow_unused=*/true);
      };
      const auto fast = grads(false), ref = grads(true);
      const double tol = dtype == torch::kFloat64 ? 1e-13 : 3e-6;
      for (size_t i = 0; i < leaves.size(); ++i) {
        ASSERT_TRUE(fast[i].defined()) << "leaf " << i;
        const auto want = ref[i].defined() ? ref[i] : torch::zeros_like(leaves[i]);
        if (want.abs().max().item<double>() == 0) {
          EXPECT_EQ(fast[i].abs().max().item<double>(), 0.0) << "leaf " << i << " " << dtype;
        } else {
          EXPECT_LT(rel(fast[i], want), tol) << "leaf " << i << " " << dtype;
        }
      }
    }
  }
}

// On another device the ops' CPU row kernels step aside for LibTorch's ops (off_rows): every op's
// value, gradient and product run on "meta" tensors (a device without storage, which a row kernel
// reading a host pointer would refuse) and keep their shapes. What CUDA tensors take, checked here
// without a GPU. LayerNorm is left out: LibTorch 1.13 has no meta kernel for its own layer_norm.
TEST(CurvatureOpsOnAnotherDevice, TakeLibTorchsOpsAndKeepShapes) {
  auto m = [](std::vector<int64_t> shape) {
    return torch::empty(shape, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kMeta)).requires_grad_(true);
  };
  const auto f = torch::empty({5, 3}, torch::TensorOptions().device(torch::kMeta));
  const std::vector<std::pair<std::string, std::function<std::pair<torch::Tensor, std::vector<torch::Tensor>>()>>> cases = {
      {"gelu_mlp",
       [&] {
         auto x = m({2, 3, 4}), W1 = m({6, 4}), b1 = m({6}), W2 = m({5, 6}), b2 = m({5});
         return std::make_pair(ops::gelu_mlp(x, W1, b1, W2, b2), std::vector<torch::Tensor>{x, W1, b1, W2, b2});
       }},
      {"rms_norm",
       [&] {
         auto x = m({2, 3, 6}), w = m({6});
         return std::make_pair(ops::rms_norm(x, w, 1e-6), std::vector<torch::Tensor>{x, w});
       }},
      {"swiglu",
       [&] {
         auto g = m({3, 7}), u = m({3, 7});
         return std::make_pair(ops::swiglu(g, u), std::vector<torch::Tensor>{g, u});
       }},
      {"rope",
       [&] {
         auto x = m({2, 2, 5, 6});
         return std::make_pair(ops::rope(x, f, f), std::vector<torch::Tensor>{x});
       }},
      {"causal_attention",
       [&] {
         auto q = m({2, 4, 5, 3}), k = m({2, 2, 5, 3}), v = m({2, 2, 5, 3});
         return std::make_pair(ops::causal_attention(q, k, v), std::vector<torch::Tensor>{q, k, v});
       }},
  };
  for (const auto& [name, make] : cases) {
    SCOPED_TRACE(name);
    auto [y, leaves] = make();
    EXPECT_TRUE(y.device().is_meta());
    const auto loss = (y * y).sum();
    const auto first = torch::autograd::grad({loss}, leaves, {}, /*retain_graph=*/true, /*create_graph=*/false);
    auto g = torch::autograd::grad({loss}, leaves, {}, /*retain_graph=*/true, /*create_graph=*/true);
    std::vector<torch::Tensor> v;
    for (const auto& l : leaves) v.push_back(torch::empty_like(l.detach()));
    const auto hv =
        torch::autograd::grad(g, leaves, v, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < leaves.size(); ++i) {
      EXPECT_EQ(first[i].sizes(), leaves[i].sizes());
      if (hv[i].defined()) {
        EXPECT_EQ(hv[i].sizes(), leaves[i].sizes());
      }
    }
  }
}

// The recorded forward's fused pass against the ops it replaces (LibTorch's `scores * s` and
// masked_fill of the strict upper triangle, repeated for grouped heads): the same bit patterns, in float32
// and float64, at 1 and 3 threads.
TEST(CausalAttention, ScaleAndMaskGivesTheBitsOfMulAndMaskedFill) {
  torch::manual_seed(9);
  const int threads = at::get_num_threads();
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const int64_t rep : {1, 3}) {
      for (const int n : {1, 3}) {
        at::set_num_threads(n);
        const int64_t T = 37;
        const double s = 1.0 / std::sqrt(7.0);
        const auto scores = torch::randn({4, rep * T, T}, torch::TensorOptions().dtype(dtype)) * 10;
        const auto mask = torch::ones({T, T}, torch::kBool).triu(1).repeat({rep, 1});
        const auto want = (scores * s).masked_fill(mask, -std::numeric_limits<double>::infinity());
        const auto got = scores.clone();
        ops::detail::scale_and_mask_causal(got, s);
        const auto bits = dtype == torch::kFloat32 ? torch::kInt32 : torch::kInt64;
        EXPECT_TRUE(torch::equal(got.view(bits), want.view(bits))) << dtype << " rep " << rep << " threads " << n;
      }
    }
  }
  at::set_num_threads(threads);
}

// exp_poly against exp in double rounded to float (the correctly rounded result but for double
// rounding, which cannot move it by an ulp): at most one ulp apart, counted in bit patterns, over every
// 61st float from -104 to 89 (6.4 million of them, subnormal results included), and exactly 0, inf,
// NaN outside.
TEST(ExpPoly, WithinOneUlpOfExp) {
  int64_t worst = 0, count = 0;
  float at = 0;
  for (const float sign : {1.0f, -1.0f}) {
    for (uint32_t b = 0;; b += 61) {
      float x;
      std::memcpy(&x, &b, sizeof x);
      x *= sign;
      if (x > 89.0f || x < -104.0f) break;
      const float want = static_cast<float>(std::exp(static_cast<double>(x))), got = ops::detail::exp_poly(x);
      int32_t gb, wb;
      std::memcpy(&gb, &got, sizeof gb);
      std::memcpy(&wb, &want, sizeof wb);
      const int64_t d = std::abs(static_cast<int64_t>(gb) - wb);
      if (d > worst) worst = d, at = x;
      ++count;
    }
  }
  EXPECT_LE(worst, 1) << "at x = " << at;
  EXPECT_GT(count, 6000000);
  EXPECT_EQ(ops::detail::exp_poly(0.0f), 1.0f);
  EXPECT_NEAR(ops::detail::exp_poly(88.72f) / std::exp(double{88.72f}), 1.0, 1.2e-7);  // near the largest finite
  EXPECT_EQ(ops::detail::exp_poly(-1000.0f), 0.0f);
  EXPECT_EQ(ops::detail::exp_poly(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(ops::detail::exp_poly(88.8f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(ops::detail::exp_poly(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(ops::detail::exp_poly(std::numeric_limits<float>::quiet_NaN())));
}

// The training step's GELU forward (gelu_tanh_rows) against the function in double, h sigmoid(2u)
// with u from the same float h: relative error within (6 + 12|u|) 2^-24: the kernel's few roundings,
// and u's six (two float constants, four operations), each amplified by exp's condition 2|u|; and
// (1 + |h|) 2^-149 absolute
// where exp(2u) or the result is subnormal; LibTorch's tanh form against
// the same reference for scale. Both compiled variants give the same bits, at 1 and 3 threads; the
// edges (signed zeros, huge values, infinities, NaN) are gelu's.
TEST(GeluTanhRows, WithinItsBoundOfTheFunctionInBothVariants) {
  torch::manual_seed(10);
  const float inf = std::numeric_limits<float>::infinity();
  const auto h = torch::cat({torch::linspace(-12, 12, 1 << 20), torch::randn({1 << 18}) * 3,
                             torch::tensor({0.0f, -0.0f, 1e-30f, -1e-30f, 1e-40f, 20.0f, -20.0f, 1e30f, -1e30f, inf})});
  const int64_t n = h.numel();
  const auto a = same_bits_in_every_variant([&] {
    auto a = torch::empty_like(h);
    ops::detail::gelu_tanh_rows(h.data_ptr<float>(), a.data_ptr<float>(), n);
    return std::vector<torch::Tensor>{a};
  })[0];
  const auto hd = h.to(torch::kFloat64), ud = std::sqrt(2 / M_PI) * (hd + 0.044715 * hd * hd * hd);
  const auto ref = hd / (1 + torch::exp(-2 * ud));
  const auto finite = torch::isfinite(hd) & (hd.abs() < 1e10);
  // |v - ref| over its bound |ref| (6 + 12|u|) 2^-24 + (1 + |h|) 2^-149 (the last where exp(2u) or the
  // result round into subnormals).
  const auto scaled = [&](const torch::Tensor& v) {
    const auto bound = ref.abs() * (6 + 12 * ud.abs()) * std::ldexp(1.0, -24) + (1 + hd.abs()) * std::ldexp(1.0, -149);
    return ((v.to(torch::kFloat64) - ref).abs() / bound).masked_select(finite);
  };
  const double ours = scaled(a).max().item<double>(), libtorch = scaled(at::gelu(h, "tanh")).max().item<double>();
  EXPECT_LE(ours, 1.0) << "LibTorch's tanh form reads " << libtorch;
  std::printf("gelu_tanh_rows: worst error %.3f of its bound; LibTorch's tanh form %.3g\n", ours, libtorch);
  // Edges: the last ten values, as LibTorch's gelu gives them (bit for bit).
  const auto edge = a.narrow(0, n - 10, 10), lib = at::gelu(h.narrow(0, n - 10, 10), "tanh");
  EXPECT_TRUE(torch::equal(edge.view(torch::kInt32), lib.view(torch::kInt32))) << edge << lib;
  const auto special = torch::tensor({-inf, std::numeric_limits<float>::quiet_NaN()});
  auto sa = torch::empty_like(special);
  ops::detail::gelu_tanh_rows(special.data_ptr<float>(), sa.data_ptr<float>(), 2);
  EXPECT_TRUE(std::isnan(sa[0].item<float>()) && std::isnan(sa[1].item<float>())) << sa;  // as gelu(-inf) = nan
}

// The training step's GELU backward from the forward's value (gelu_tanh_backward_rows: s = 2a/h for
// 1 + tanh(u)) against da f'(h) in double, f' = s/2 + h s (2 - s) u'/2 with s = 2 sigmoid(2u), given
// a within its forward bound (float: the kernel's own a; double: h / (1 + exp(-2u)) in double):
// within (16 + 24|u|) ulps of |da| times the magnitudes of f''s terms, s/2 + |h| s (2 - s) u'/2, and
// of s's influence, |h (1 - s) u'| s (a's error enters through s, amplified as exp's by 2|u|). Exact
// where h = 0 (f' = 1/2). Both compiled variants give the same bits, at 1 and 3 threads (the AVX-512
// loop ran one element at a time until 2026-12-03: a captured constant was reloaded every element).
TEST(GeluTanhBackwardRows, WithinItsBoundOfTheDerivativeInBothVariants) {
  torch::manual_seed(12);
  const auto h = torch::cat({torch::linspace(-12, 12, 1 << 18), torch::randn({1 << 16}) * 3,
                             torch::tensor({0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f})});
  const auto da = torch::randn_like(h);
  const int64_t n = h.numel();
  const auto hd = h.to(torch::kFloat64), ud = std::sqrt(2 / M_PI) * (hd + 0.044715 * hd * hd * hd);
  // 1 + tanh(u) as 2 sigmoid(2u) and 1 - tanh(u)^2 as s (2 - s): tanh in double rounds to -1 below u ~ -19.
  const auto dud = std::sqrt(2 / M_PI) * (1 + 3 * 0.044715 * hd * hd), sd = 2 / (1 + torch::exp(-2 * ud));
  const auto ref = da.to(torch::kFloat64) * (0.5 * sd + 0.5 * hd * sd * (2 - sd) * dud);
  const auto scale = da.to(torch::kFloat64).abs() *
                     (0.5 * sd + hd.abs() * sd * (2 - sd) * dud / 2 + (hd * (1 - sd) * dud).abs() * sd) *
                     (16 + 24 * ud.abs());
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const bool single = dtype == torch::kFloat32;
    const auto hx = h.to(dtype), dax = da.to(dtype);
    auto a = torch::empty_like(hx);
    if (single)
      ops::detail::gelu_tanh_rows(hx.data_ptr<float>(), a.data_ptr<float>(), n);
    else
      a = hd / (1 + torch::exp(-2 * ud));
    const auto dh = same_bits_in_every_variant([&] {
      auto dh = torch::empty_like(hx);
      if (single)
        ops::detail::gelu_tanh_backward_rows(dax.data_ptr<float>(), hx.data_ptr<float>(), a.data_ptr<float>(),
                                             dh.data_ptr<float>(), n);
      else
        ops::detail::gelu_tanh_backward_rows(dax.data_ptr<double>(), hx.data_ptr<double>(), a.data_ptr<double>(),
                                             dh.data_ptr<double>(), n);
      return std::vector<torch::Tensor>{dh};
    })[0];
    const double ulp = std::ldexp(1.0, single ? -24 : -53);
    // and where a is subnormal, its absolute rounding (2^-149 in float) through s = 2a/h: |da| (1 + u') 2^-144.
    const auto bound = scale * ulp + da.to(torch::kFloat64).abs() * (1 + dud) * std::ldexp(1.0, single ? -144 : -1069);
    const double worst = ((dh.to(torch::kFloat64) - ref).abs() / bound).max().item<double>();
    const auto at = ((dh.to(torch::kFloat64) - ref).abs() / bound).argmax().item<int64_t>();
    EXPECT_LE(worst, 1.0) << dtype << " at h = " << hd[at].item<double>();
    std::printf("gelu_tanh_backward_rows (%s): worst error %.3f of its bound\n", single ? "float" : "double", worst);
    const auto zero = (h == 0).nonzero().flatten();  // f'(0) = 1/2 exactly
    EXPECT_TRUE(torch::equal(dh.index_select(0, zero), dax.index_select(0, zero) * 0.5));
  }
}

// GPT-2's fc_in bias folded into the GELU's passes: gelu_tanh_bias_rows leaves h + b in h (the bits
// of LibTorch's broadcast addition) and gelu_tanh_rows' value of it in a; gelu_tanh_backward_bias_rows
// gives gelu_tanh_backward_rows' dh bit for bit and its column sums within float32's summation bound
// of the float64 sums ((rows - 1) 2^-24 sum |dh|), dh's rows written where a row stride says and
// nothing between them. Rows not a multiple of the kernels' 32-row blocks; both variants, 1 and 3
// threads, the same bits.
TEST(GeluTanhBiasRows, AddTheBiasAndSumTheColumnsInTheGeluPasses) {
  torch::manual_seed(14);
  const int64_t rows = 77, cols = 300;
  const auto h = torch::randn({rows, cols}) * 3, b = torch::randn({cols}), da = torch::randn({rows, cols});
  const auto out = same_bits_in_every_variant([&] {
    auto hb = h.clone(), a = torch::empty_like(h);
    ops::detail::gelu_tanh_bias_rows(hb.data_ptr<float>(), b.data_ptr<float>(), a.data_ptr<float>(), rows, cols);
    auto wide = torch::full({rows, cols + 5}, 7.0f), db = torch::empty({cols});  // dh's rows cols + 5 apart
    ops::detail::gelu_tanh_backward_bias_rows(da.data_ptr<float>(), hb.data_ptr<float>(), a.data_ptr<float>(),
                                              wide.data_ptr<float>(), cols + 5, db.data_ptr<float>(), rows, cols);
    EXPECT_TRUE((wide.narrow(1, cols, 5) == 7.0f).all().item<bool>());  // the padding left as it was
    return std::vector<torch::Tensor>{hb, a, wide.narrow(1, 0, cols).contiguous(), db};
  });
  const auto &hb = out[0], &a = out[1], &dh = out[2], &db = out[3];
  EXPECT_TRUE(torch::equal(hb, h + b));
  auto a_ref = torch::empty_like(h), dh_ref = torch::empty_like(h);
  ops::detail::gelu_tanh_rows(hb.data_ptr<float>(), a_ref.data_ptr<float>(), rows * cols);
  EXPECT_TRUE(torch::equal(a, a_ref));
  ops::detail::gelu_tanh_backward_rows(da.data_ptr<float>(), hb.data_ptr<float>(), a.data_ptr<float>(),
                                       dh_ref.data_ptr<float>(), rows * cols);
  EXPECT_TRUE(torch::equal(dh, dh_ref));
  const auto dhd = dh.to(torch::kFloat64);
  const auto err = (db.to(torch::kFloat64) - dhd.sum(0)).abs(),
             bound = (rows - 1) * std::ldexp(1.0, -24) * dhd.abs().sum(0);
  EXPECT_TRUE((err <= bound).all().item<bool>()) << "worst " << (err / bound).max().item<double>() << " of the bound";
}

// The rows a residual product accumulates into (add_row_vector_rows): x + b, exactly LibTorch's, in
// both variants and at 1 and 3 threads.
TEST(AddRowVectorRows, ResidualRowsWithTheBiasAreLibTorchsSum) {
  torch::manual_seed(15);
  const int64_t rows = 101, cols = 37;
  const auto x = torch::randn({rows, cols}), b = torch::randn({cols});
  const auto out = same_bits_in_every_variant([&] {
    auto xb = torch::empty({rows, cols});
    ops::detail::add_row_vector_rows(x.data_ptr<float>(), b.data_ptr<float>(), xb.data_ptr<float>(), rows, cols);
    return std::vector<torch::Tensor>{xb};
  });
  EXPECT_TRUE(torch::equal(out[0], x + b));
}

// The training step's causal softmax (causal_softmax_rows) against LibTorch's `scores * s`,
// masked_fill and softmax in double on the same float scores (its oracle in the ops' tests):
// |P - ref| within 8 (1 + |s x - m|) 2^-24 of max(P, 2^-126): a few roundings and exp's ulp, and the
// rounding of s x - m carried through exp (scores spread by ~±60 here, so by up to ~45 in a row);
// exact zeros above the diagonal; the rows sum to 1 within 2^-20. Both compiled variants give the same bits, at 1 and 3
// threads, grouped rows (rep 3) included; a row of one key is exactly 1. T = 37 runs the general loop,
// T = 48 (a multiple of 16) the whole sixteens, which give the general loop's bits: rows of T = 48's
// first 37 keys are T = 37's rows of the same scores.
torch::Tensor causal_softmax_of(const torch::Tensor& scores, float s) {
  return same_bits_in_every_variant([&] {
    auto P = scores.clone();
    ops::detail::causal_softmax_rows(P.data_ptr<float>(), s, P.size(0) * P.size(1), P.size(2));
    return std::vector<torch::Tensor>{P};
  })[0];
}
TEST(CausalSoftmaxRows, WithinItsBoundOfLibTorchsSoftmaxInBothVariants) {
  torch::manual_seed(11);
  const int64_t rep = 3;
  const float s = 1.0f / std::sqrt(7.0f);
  const auto scores48 = torch::randn({5, rep, 48, 48}) * 20;
  for (const int64_t T : {37, 48}) {
    SCOPED_TRACE("T = " + std::to_string(T));
    const auto scores = scores48.slice(2, 0, T).slice(3, 0, T).reshape({5, rep * T, T});
    const auto P = causal_softmax_of(scores, s);
    const auto mask = torch::ones({T, T}, torch::kBool).triu(1).repeat({rep, 1});
    const auto scaled = (scores * s).to(torch::kFloat64);  // the float product, as LibTorch's `scores * s`
    const auto ref = torch::softmax(scaled.masked_fill(mask, -std::numeric_limits<double>::infinity()), -1);
    const auto m = scaled.masked_fill(mask, -1e300).amax(-1, true);
    const auto bound = 8 * std::ldexp(1.0, -24) * (P.to(torch::kFloat64).abs().clamp_min(std::ldexp(1.0, -126))) *
                       (1 + (scaled - m).abs());
    const auto err = (P.to(torch::kFloat64) - ref).abs() / bound;
    EXPECT_LE(err.max().item<double>(), 1.0);
    std::printf("causal_softmax_rows (T = %ld): worst error %.3f of its bound\n", static_cast<long>(T),
                err.max().item<double>());
    EXPECT_EQ(P.masked_select(mask.expand_as(P)).abs().max().item<float>(), 0.0f);
    EXPECT_LE((P.to(torch::kFloat64).sum(-1) - 1).abs().max().item<double>(), std::ldexp(1.0, -20));
    EXPECT_EQ(P.select(1, 0).select(1, 0).min().item<float>(), 1.0f);  // row 0: one key
  }
  const auto P37 = causal_softmax_of(scores48.slice(2, 0, 37).slice(3, 0, 37).reshape({5, rep * 37, 37}), s);
  const auto P48 = causal_softmax_of(scores48.reshape({5, rep * 48, 48}), s).view({5, rep, 48, 48});
  EXPECT_TRUE(torch::equal(P48.slice(2, 0, 37).slice(3, 0, 37).reshape({5, rep * 37, 37}).view(torch::kInt32),
                           P37.view(torch::kInt32)));
}

// The training step's score gradient (causal_softmax_backward_rows) against its formula in LibTorch's
// ops in double, s P (dP - rowsum(dP P)) with dP = dPv + gP, on the causal part: the largest error
// within 1e-6 (float) and 1e-14 (double) of the largest |dS|; zeros above the diagonal. The same bits
// in both variants, at 1 and 3 threads, with and without gP, whatever lies above the diagonal of dPv and
// gP (NaN here); T = 37 (the general loop) and T = 48 (whole
// sixteens), whose rows' first 37 keys give T = 37's bits.
TEST(CausalSoftmaxBackwardRows, MatchesItsFormulaInBothVariants) {
  torch::manual_seed(12);
  const int64_t rep = 3;
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto mask48 = torch::ones({48, 48}, torch::kBool).triu(1);
    const auto P48 = torch::softmax(torch::randn({4, rep, 48, 48}, dtype).masked_fill(mask48, -INFINITY), -1);
    // NaN above the diagonal, where the kernels must not look (the products leave it unwritten there)
    const auto dPv48 = torch::randn({4, rep, 48, 48}, dtype).masked_fill(mask48, NAN),
               gPv48 = torch::randn({4, rep, 48, 48}, dtype).masked_fill(mask48, NAN);
    for (const bool with_gP : {false, true}) {
      const double s = 0.3;
      std::vector<torch::Tensor> by_T;
      for (const int64_t T : {37, 48}) {
        SCOPED_TRACE(std::string(c10::toString(dtype)) + (with_gP ? " with gP" : "") + ", T = " + std::to_string(T));
        const auto mask = torch::ones({T, T}, torch::kBool).triu(1).repeat({rep, 1});
        auto cut = [&](const torch::Tensor& t) { return t.slice(2, 0, T).slice(3, 0, T).reshape({4, rep * T, T}); };
        // (the first 37 keys of a 48-key softmax sum to less than 1: the formula holds for any P)
        const auto P = cut(P48), dPv = cut(dPv48), gPv = cut(gPv48);
        const auto dS = same_bits_in_every_variant([&] {
          auto dS = torch::full_like(P, 7.0);  // every entry written
          AT_DISPATCH_FLOATING_TYPES(dtype, "test", [&] {
            ops::detail::causal_softmax_backward_rows(
                dPv.data_ptr<scalar_t>(), with_gP ? gPv.data_ptr<scalar_t>() : nullptr, P.data_ptr<scalar_t>(),
                static_cast<scalar_t>(s), dS.data_ptr<scalar_t>(), 4 * rep * T, T);
          });
          return std::vector<torch::Tensor>{dS};
        })[0];
        const auto Pd = P.to(torch::kFloat64);
        const auto dP = (with_gP ? dPv + gPv : dPv).to(torch::kFloat64).masked_fill(mask, 0);
        const auto want = s * Pd * (dP - (dP * Pd).sum(-1, true));
        EXPECT_LT(rel(dS.to(torch::kFloat64), want), dtype == torch::kFloat32 ? 1e-6 : 1e-14);
        EXPECT_EQ(dS.masked_select(mask.expand_as(P)).abs().max().item<double>(), 0.0);
        by_T.push_back(dS);
      }
      const auto bits = dtype == torch::kFloat32 ? torch::kInt32 : torch::kInt64;
      const auto first37 = by_T[1].view({4, rep, 48, 48}).slice(2, 0, 37).slice(3, 0, 37).reshape({4, rep * 37, 37});
      EXPECT_TRUE(torch::equal(first37.view(bits), by_T[0].view(bits)));
    }
  }
}

// The training step's SwiGLU passes (swiglu_rows, swiglu_backward_rows) against the formulas in
// double: y = silu(g) u within 6 2^-24 relative (exp's ulp and four roundings; g itself is exact) plus
// 2^-149 (1 + |u|) where silu underflows; the gradient (dg, du) within 2e-6
// of its largest value (max-norm, as the other float checks). Both variants and 1 and 3 threads give
// the same bits; silu's edges are LibTorch's (silu(-inf) = NaN, silu(inf) = inf, -0 far below).
TEST(SwigluRows, WithinTheirBoundsOfTheFormulasInBothVariants) {
  torch::manual_seed(13);
  const float inf = std::numeric_limits<float>::infinity();
  const auto g = torch::cat({torch::linspace(-30, 30, 1 << 18), torch::randn({1 << 16}) * 4}), u = torch::randn_like(g),
             dy = torch::randn_like(g);
  const int64_t n = g.numel();
  const auto out = same_bits_in_every_variant([&] {
    auto y = torch::empty_like(g), dg = torch::empty_like(g), du = torch::empty_like(g);
    ops::detail::swiglu_rows(g.data_ptr<float>(), u.data_ptr<float>(), y.data_ptr<float>(), n);
    ops::detail::swiglu_backward_rows(dy.data_ptr<float>(), g.data_ptr<float>(), u.data_ptr<float>(),
                                      dg.data_ptr<float>(), du.data_ptr<float>(), n);
    return std::vector<torch::Tensor>{y, dg, du};
  });
  const auto gd = g.to(torch::kFloat64), ud = u.to(torch::kFloat64), dyd = dy.to(torch::kFloat64);
  const auto sig = torch::sigmoid(gd), silu = gd * sig;
  const auto y_ref = silu * ud;
  const auto bound = y_ref.abs() * 6 * std::ldexp(1.0, -24) + (1 + ud.abs()) * std::ldexp(1.0, -149);
  const double worst = ((out[0].to(torch::kFloat64) - y_ref).abs() / bound).max().item<double>();
  EXPECT_LE(worst, 1.0);
  std::printf("swiglu_rows: worst error %.3f of its bound\n", worst);
  EXPECT_LT(rel(out[1].to(torch::kFloat64), dyd * ud * sig * (1 + gd * (1 - sig))), 2e-6);
  EXPECT_LT(rel(out[2].to(torch::kFloat64), dyd * silu), 2e-6);
  const auto edge = torch::tensor({-inf, inf, -200.0f, 0.0f}), one = torch::ones({4});
  auto ye = torch::empty_like(edge);
  ops::detail::swiglu_rows(edge.data_ptr<float>(), one.data_ptr<float>(), ye.data_ptr<float>(), 4);
  const auto lib = at::silu(edge);
  EXPECT_TRUE(std::isnan(ye[0].item<float>()) && std::isnan(lib[0].item<float>()));
  EXPECT_TRUE(torch::equal(ye.narrow(0, 1, 3).view(torch::kInt32), lib.narrow(0, 1, 3).view(torch::kInt32)))
      << ye << lib;
}

// The training step's RMSNorm passes (rms_norm_rows, rms_norm_backward_rows) against the formulas in
// double: rho, y and dy xh within 8 2^-24 relative per element (a sum of squares, positive terms, of
// D = 200 in sixteen partial sums, a sqrt and a few roundings), dx within 1e-6 of its largest value
// (z - xh sum(z xh) / D cancels). Both variants and 1 and 3 threads give the same bits; D = 200 leaves
// a tail of 8 past the sixteens.
TEST(RmsNormRows, WithinTheirBoundsOfTheFormulasInBothVariants) {
  torch::manual_seed(14);
  const int64_t rows = 300, D = 200;
  const float eps = 1e-6f;
  const auto x = torch::randn({rows, D}) * torch::rand({rows, 1}) * 10, w = 1 + 0.3 * torch::randn({D}),
             dy = torch::randn({rows, D});
  const auto out = same_bits_in_every_variant([&] {
    auto y = torch::empty_like(x), rho = torch::empty({rows}), dx = torch::empty_like(x), dyxh = torch::empty_like(x);
    ops::detail::rms_norm_rows(x.data_ptr<float>(), w.data_ptr<float>(), eps, y.data_ptr<float>(),
                               rho.data_ptr<float>(), rows, D);
    ops::detail::rms_norm_backward_rows(dy.data_ptr<float>(), x.data_ptr<float>(), w.data_ptr<float>(),
                                        rho.data_ptr<float>(), dx.data_ptr<float>(), dyxh.data_ptr<float>(), rows, D);
    return std::vector<torch::Tensor>{y, rho, dx, dyxh};
  });
  const auto xd = x.to(torch::kFloat64), wd = w.to(torch::kFloat64), dyd = dy.to(torch::kFloat64);
  const auto rho = torch::rsqrt(xd.pow(2).mean(-1, true) + double{eps}), xh = xd * rho, z = dyd * wd;
  const auto dx = rho * (z - xh * (z * xh).sum(-1, true) / D);
  auto worst = [](const torch::Tensor& got, const torch::Tensor& want) { return half_ulps(got, want, want); };
  EXPECT_LE(worst(out[1], rho.squeeze(-1)), 8.0);
  EXPECT_LE(worst(out[0], xh * wd), 8.0);
  EXPECT_LT(rel(out[2].to(torch::kFloat64), dx), 1e-6);
  EXPECT_LE(worst(out[3], dyd * xh), 8.0);
  std::printf("rms_norm_rows: rho %.2f, y %.2f half-ulps\n", worst(out[1], rho.squeeze(-1)), worst(out[0], xh * wd));
}

// The training step's LayerNorm kernels (layer_norm_rows, layer_norm_backward_rows) against the
// formulas in double on the same float values, each error measured in half-ulps of the scale that x's
// own rounding has at that point (the mean of a row with a large offset rounds to within a few ulps of
// mean|x|, not of |mean|, and that rounding carries into x - mean, as an ulp of x itself would): mean
// within 8 of mean|x|, rstd within 8 of itself, y within 8 of |xh w| + |b| + |w| rstd mean|x|; dx to
// 1e-6 of its largest; the column sums dw = sum dy xh and db = sum dy within (32 + blocks + 8) of the
// sums of the terms' magnitudes (|dy| (|xh| + rstd mean|x|) for dw): a block's 32 rows, the blocks,
// and xh's rounding. Rows of very different scales, with offsets; 300 rows, the last block partial.
// Both compiled variants give the same bits, at 1 and 3 threads.
TEST(LayerNormRows, WithinTheirBoundsOfTheFormulasInBothVariants) {
  torch::manual_seed(17);
  const int64_t rows = 300, D = 200;
  const float eps = 1e-5f;
  const auto x = torch::randn({rows, D}) * torch::rand({rows, 1}) * 10 + torch::randn({rows, 1}) * 4;
  const auto w = 1 + 0.3 * torch::randn({D}), b = 0.5 * torch::randn({D}), dy = torch::randn({rows, D});
  const auto out = same_bits_in_every_variant([&] {
    auto y = torch::empty_like(x), mean = torch::empty({rows}), rstd = torch::empty({rows});
    auto dx = torch::empty_like(x), dw = torch::empty({D}), db = torch::empty({D});
    ops::detail::layer_norm_rows(x.data_ptr<float>(), w.data_ptr<float>(), b.data_ptr<float>(), eps,
                                 y.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(), rows, D);
    ops::detail::layer_norm_backward_rows(dy.data_ptr<float>(), x.data_ptr<float>(), w.data_ptr<float>(),
                                          mean.data_ptr<float>(), rstd.data_ptr<float>(), dx.data_ptr<float>(),
                                          dw.data_ptr<float>(), db.data_ptr<float>(), rows, D);
    return std::vector<torch::Tensor>{y, mean, rstd, dx, dw, db};
  });
  const auto xd = x.to(torch::kFloat64), wd = w.to(torch::kFloat64), bd = b.to(torch::kFloat64);
  const auto dyd = dy.to(torch::kFloat64);
  const auto mean = xd.mean(-1, true), rstd = torch::rsqrt((xd - mean).pow(2).mean(-1, true) + double{eps});
  const auto xh = (xd - mean) * rstd, z = dyd * wd;
  const auto dx = rstd * (z - z.mean(-1, true) - xh * (z * xh).mean(-1, true));
  const auto abs_mean = xd.abs().mean(-1, true), shift = rstd * abs_mean;  // x - mean's rounding, scaled
  const double mean_err = half_ulps(out[1], mean.squeeze(-1), abs_mean.squeeze(-1));
  const double rstd_err = half_ulps(out[2], rstd.squeeze(-1), rstd.squeeze(-1));
  const double y_err = half_ulps(out[0], xh * wd + bd, (xh * wd).abs() + bd.abs() + wd.abs() * shift);
  const double sums = 32 + (rows + 31) / 32 + 8;  // half-ulps: a block's rows, the blocks, xh's rounding
  const double dw_err = half_ulps(out[4], (dyd * xh).sum(0), (dyd.abs() * (xh.abs() + shift)).sum(0)) / sums;
  const double db_err = half_ulps(out[5], dyd.sum(0), dyd.abs().sum(0)) / sums;
  EXPECT_LE(mean_err, 8.0);
  EXPECT_LE(rstd_err, 8.0);
  EXPECT_LE(y_err, 8.0);
  EXPECT_LT(rel(out[3].to(torch::kFloat64), dx), 1e-6);
  EXPECT_LE(dw_err, 1.0);
  EXPECT_LE(db_err, 1.0);
  std::printf(
      "layer_norm_rows: mean %.2f, rstd %.2f, y %.2f half-ulps; dx %.2g of its largest; dw %.3f, db %.3f "
      "of their bounds\n",
      mean_err, rstd_err, y_err, rel(out[3].to(torch::kFloat64), dx), dw_err, db_err);
}

// RoPE on the heads as the models make them ([B, T, H, d] projections seen as [B, H, T, d]), and on
// a gradient laid out so (attention's dq, dk): the rotation and its gradient keep that layout (no copy; the models'
// flattening after it stays a view), and equal LibTorch's composite (Hugging Face's rotate_half form,
// NativeSecondOrder) bit for bit in float32, as the same products and sums, in both loop variants and
// at 1 and 3 threads (row_kernels' rope_rows); head sizes 8 (a part vector) and 32 (the models').
TEST(Rope, KeepsTheLayoutOfStridedHeads) {
  torch::manual_seed(18);
  for (const int64_t d : {8, 32}) {
    SCOPED_TRACE("head size " + std::to_string(d));
    const int64_t B = 2, T = 7, H = 3;
    const auto x = torch::randn({B, T, H, d}).transpose(1, 2).detach().requires_grad_(true);
    const auto angles = torch::randn({T, d / 2}), gy = torch::randn({B, T, H, d}).transpose(1, 2);
    auto run = [&](bool native) {
      std::optional<ops::NativeSecondOrder> guard;
      if (native) guard.emplace();
      const auto y = ops::rope(x, angles.cos(), angles.sin());
      return std::vector<torch::Tensor>{y, torch::autograd::grad({y}, {x}, {gy})[0]};  // gy as attention's dq lies
    };
    const auto ours = same_bits_in_every_variant([&] { return run(false); });
    const auto ref = run(true);
    EXPECT_EQ(ours[0].strides(), x.strides());
    EXPECT_EQ(ours[1].strides(), x.strides());
    EXPECT_TRUE(torch::equal(ours[0], ref[0]));
    EXPECT_TRUE(torch::equal(ours[1], ref[1]));
  }
}

// A training step's attention in float32 on q, k, v as the models make them ([B, T, H, d] projections
// seen as [B, H, T, d]), on the heads as they lie (4-d products, results in the projections' layout):
// one key/value head per query head, and grouped heads (rep 2: keys and values serve their group,
// their gradients summed over it inside the products). Oracle: LibTorch's ops (NativeSecondOrder) in
// float64 on the same values; value and gradients to 1e-5 of their largest. A head at a time
// (attention_heads_forward / _backward), its products in small_gemm's kernel where the CPU has it and in
// oneDNN's sgemm in the baseline loop variant, at 1 and 3 threads.
TEST(CausalAttention, FloatStepOnStridedHeadsMatchesLibTorch) {
  torch::manual_seed(15);
  const int64_t B = 2, T = 19, H = 4, d = 8;
  for (const int64_t G : {H, H / 2}) {
    SCOPED_TRACE("key/value heads " + std::to_string(G));
    const auto proj = [&](int64_t heads) { return (torch::randn({B, T, heads, d}) * 2).requires_grad_(true); };
    const auto q0 = proj(H), k0 = proj(G), v0 = proj(G), gO = torch::randn({B, T, H, d});
    auto run = [&](bool native, torch::ScalarType dtype) {
      std::optional<ops::NativeSecondOrder> guard;
      if (native) guard.emplace();
      const auto q = q0.to(dtype), k = k0.to(dtype), v = v0.to(dtype);
      const auto y = ops::causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2);
      auto g = torch::autograd::grad({(y * gO.to(dtype)).sum()}, {q0, k0, v0});
      g.push_back(y.reshape({B, T, H * d}).detach());  // flattening the heads, as the models do
      return g;
    };
    const auto want = run(true, torch::kFloat64);
    const int threads = at::get_num_threads();
    for (const LoopVariant variant : {LoopVariant::widest, LoopVariant::baseline}) {
      for (const int t : {1, 3}) {
        set_loop_variant(variant);
        at::set_num_threads(t);
        const auto got = run(false, torch::kFloat32);
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_LT(rel(got[i].to(torch::kFloat64), want[i]), 1e-5)
              << i << (variant == LoopVariant::baseline ? " baseline" : " widest") << ", " << t << " threads";
      }
    }
    set_loop_variant(LoopVariant::widest);
    at::set_num_threads(threads);
  }
}

// GPT-2's attention block as a training step runs it: q, k, v from one stacked product, attention on
// the heads as they lie, whose gradients land side by side in one buffer that the stacked product's
// backward reads without a concatenation. Oracle: LibTorch's linear and attention ops
// (NativeSecondOrder) in float64; every gradient to 1e-6 of the largest of all and to 1e-5 of its own.
TEST(CausalAttention, StackedQkvBlockGradientsMatchLibTorch) {
  torch::manual_seed(16);
  const int64_t B = 2, T = 13, H = 4, d = 6, C = H * d;
  std::vector<torch::Tensor> leaves = {torch::randn({B, T, C})};
  for (int i = 0; i < 3; ++i) leaves.push_back(torch::randn({C, C}) * 0.3);
  for (int i = 0; i < 3; ++i) leaves.push_back(torch::randn({C}) * 0.1);
  for (auto& t : leaves) t.requires_grad_(true);
  const auto gy = torch::randn({B, T, C});
  auto run = [&](bool native, torch::ScalarType dtype) {
    std::optional<ops::NativeSecondOrder> guard;
    if (native) guard.emplace();
    std::vector<torch::Tensor> l;
    for (const auto& t : leaves) l.push_back(t.to(dtype));
    const auto qkv = ops::linears(l[0], {l[1], l[2], l[3]}, {l[4], l[5], l[6]});
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, d}).transpose(1, 2); };
    const auto y =
        ops::causal_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2])).transpose(1, 2).reshape({B, T, C});
    return torch::autograd::grad({(y * gy.to(dtype)).sum()}, leaves);
  };
  const auto got = run(false, torch::kFloat32), want = run(true, torch::kFloat64);
  double scale = 0;
  for (const auto& w : want) scale = std::max(scale, w.abs().max().item<double>());
  for (size_t i = 0; i < got.size(); ++i) {
    // k's bias shifts a row's scores by one constant, which softmax ignores: its gradient is zero, so
    // every leaf is measured against the largest gradient of all, and the others against their own too.
    EXPECT_LT((got[i].to(torch::kFloat64) - want[i]).abs().max().item<double>() / scale, 1e-6) << "leaf " << i;
    if (i != 5) {
      EXPECT_LT(rel(got[i].to(torch::kFloat64), want[i]), 1e-5) << "leaf " << i;
    }
  }
  EXPECT_LT(want[5].abs().max().item<double>() / scale, 1e-12);
}

TEST(CausalAttention, SeesNoFutureKey) {
  torch::manual_seed(8);
  auto q = leaf({1, 1, 4, 2}), k = leaf({1, 1, 4, 2}), v = leaf({1, 1, 4, 2});
  auto y = ops::causal_attention(q, k, v);
  // Oracle: the first query attends to the first key only, so its output is the first value.
  EXPECT_TRUE(torch::allclose(y[0][0][0], v[0][0][0]));
  auto g = torch::autograd::grad({y[0][0][1].sum()}, {k}, {}, false, false)[0];
  EXPECT_EQ(g[0][0].slice(0, 2).abs().sum().item<double>(), 0.0);  // keys 2, 3 are in the future
}

}  // namespace
}  // namespace bs
