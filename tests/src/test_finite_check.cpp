// all_finite against its oracle, LibTorch's isfinite(t).all(): float32 and float64 tensors with one
// NaN, +inf or -inf at the start, in the middle of another thread's share, or in the loop's tail;
// the largest finite values, subnormals and signed zeros; non-contiguous views; other dtypes. The
// gradients' one pass (scan_gradients) against float64 sums and isfinite, its bits at every thread
// count and in both loop variants; clip_coefficient against LibTorch's clip_grad_norm_ tensor
// arithmetic given the same norm; scale_gradients against mul_.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "simd_loop.h"

#include "finite_check.h"

namespace {

bool oracle(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

TEST(AllFinite, AgreesWithIsfiniteAtEveryPlaceAndThreadCount) {
  const int threads = at::get_num_threads();
  for (const int t : {1, 3}) {
    at::set_num_threads(t);
    for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
      const int64_t n = (1 << 18) + 13;  // several threads' shares and a ragged tail
      auto x = torch::randn({n}, dtype);
      ASSERT_TRUE(bs::all_finite(x));
      for (const double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity()}) {
        for (const int64_t at : {int64_t{0}, n / 2 + 7, n - 1}) {
          auto y = x.clone();
          if (dtype == torch::kFloat32)
            y.data_ptr<float>()[at] = static_cast<float>(bad);
          else
            y.data_ptr<double>()[at] = bad;
          EXPECT_FALSE(bs::all_finite(y)) << dtype << " " << bad << " at " << at << ", " << t << " threads";
          EXPECT_EQ(bs::all_finite(y), oracle(y));
        }
      }
      const auto edge = dtype == torch::kFloat32
                            ? torch::tensor({std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                                             std::numeric_limits<float>::denorm_min(), -0.0f, 0.0f})
                            : torch::tensor({std::numeric_limits<double>::max(), -std::numeric_limits<double>::max(),
                                             std::numeric_limits<double>::denorm_min(), -0.0, 0.0},
                                            torch::kFloat64);
      EXPECT_TRUE(bs::all_finite(edge)) << dtype;
    }
  }
  at::set_num_threads(threads);
  auto m = torch::randn({64, 48});
  m.data_ptr<float>()[5 * 48 + 40] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(bs::all_finite(m.t()));                  // non-contiguous
  EXPECT_TRUE(bs::all_finite(m.narrow(1, 0, 40).t()));  // the infinity left out
  EXPECT_TRUE(bs::all_finite(torch::Tensor()));
  EXPECT_TRUE(bs::all_finite(torch::empty({0})));
  EXPECT_TRUE(bs::all_finite(torch::arange(10)));  // integers: isfinite's answer
  auto h = torch::randn({100}).to(torch::kFloat16);
  EXPECT_TRUE(bs::all_finite(h));
  h.narrow(0, 3, 1).fill_(torch::full({}, std::numeric_limits<float>::quiet_NaN()));
  EXPECT_FALSE(bs::all_finite(h));
}

// A model's worth of gradients: float32 tensors of several sizes (one spanning several pieces, ragged
// tails), an undefined one, an empty one.
std::vector<torch::Tensor> some_grads(torch::ScalarType dtype = torch::kFloat32) {
  torch::manual_seed(3);
  std::vector<torch::Tensor> g;
  for (const int64_t n : {int64_t{17}, int64_t{(1 << 15) * 3 + 5}, int64_t{1}, int64_t{4096}, int64_t{100003}})
    g.push_back(torch::randn({n}, dtype) * (1.0 + static_cast<double>(n % 7)));
  g.insert(g.begin() + 2, torch::Tensor());
  g.push_back(torch::empty({0}, dtype));
  g.push_back(torch::randn({64, 48}, dtype));
  return g;
}

double oracle_norm(const std::vector<torch::Tensor>& grads) {
  double sum = 0;
  for (const auto& g : grads)
    if (g.defined() && g.numel() > 0) sum += g.to(torch::kFloat64).pow(2).sum().item<double>();
  return std::sqrt(sum);
}

TEST(ScanGradients, NormIsTheFloat64SumWithTheSameBitsEverywhere) {
  const int threads = at::get_num_threads();
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto grads = some_grads(dtype);
    at::set_num_threads(1);
    const auto one = bs::scan_gradients(grads);
    EXPECT_EQ(one.first_nonfinite, -1);
    EXPECT_NEAR(one.norm, oracle_norm(grads), 1e-13 * one.norm) << dtype;
    at::set_num_threads(3);
    EXPECT_EQ(bs::scan_gradients(grads).norm, one.norm) << dtype << ": 3 threads";
    bs::set_loop_variant(bs::LoopVariant::baseline);
    EXPECT_EQ(bs::scan_gradients(grads).norm, one.norm) << dtype << ": baseline loop";
    bs::set_loop_variant(bs::LoopVariant::widest);
  }
  at::set_num_threads(threads);
  // A non-contiguous gradient, and one LibTorch's norm takes (float16).
  auto m = torch::randn({64, 48});
  const std::vector<torch::Tensor> odd = {m.t(), torch::randn({100}).to(torch::kFloat16)};
  EXPECT_NEAR(bs::scan_gradients(odd).norm, oracle_norm(odd), 1e-3 * oracle_norm(odd));
  EXPECT_EQ(bs::scan_gradients({}).norm, 0.0);
  EXPECT_EQ(bs::scan_gradients({torch::Tensor(), torch::empty({0})}).first_nonfinite, -1);
}

TEST(ScanGradients, NamesTheFirstNonFiniteTensor) {
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity()}) {
      for (const size_t at : {size_t{1}, size_t{3}, size_t{5}}) {  // ragged pieces, a single value, 100003
        auto grads = some_grads(dtype);
        auto& g = grads[at];
        g.view({-1}).narrow(0, g.numel() - 1, 1).fill_(bad);  // the last value: a piece's tail
        grads[7].view({-1}).narrow(0, 0, 1).fill_(bad);       // a later tensor too: the first one is named
        const auto scan = bs::scan_gradients(grads);
        EXPECT_EQ(scan.first_nonfinite, static_cast<int64_t>(at)) << dtype << " " << bad;
        EXPECT_FALSE(std::isfinite(scan.norm));
      }
    }
  }
  // float64 values whose squares overflow are finite: the norm is infinite, as LibTorch's.
  auto big = torch::full({10}, 1e200, torch::kFloat64);
  const auto scan = bs::scan_gradients({big});
  EXPECT_EQ(scan.first_nonfinite, -1);
  EXPECT_EQ(scan.norm, std::numeric_limits<double>::infinity());
  EXPECT_EQ(bs::scan_gradients({torch::randn({10}), big.narrow(0, 0, 3)}).first_nonfinite, -1);
}

TEST(ClipGradients, CoefficientAndScalingAsClipGradNorm) {
  // LibTorch's clip_grad_norm_ from its total norm on: max_norm / (norm + 1e-6) as a tensor of the
  // norm's dtype, clamp(max = 1), mul_.
  auto libtorch_coefficient = [](double norm, double max_norm, torch::ScalarType dtype) {
    const auto total = torch::full({}, norm, torch::TensorOptions().dtype(dtype));
    return torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  };
  const std::vector<torch::Tensor> f32 = {torch::randn({3})}, f64 = {torch::randn({3}, torch::kFloat64)};
  for (const double norm : {0.0, 1e-7, 0.3, 0.999999, 1.0, 1.0000001, 2.5, 1e5, 1e30}) {
    for (const double max_norm : {0.1, 1.0, 5.0}) {
      EXPECT_EQ(bs::clip_coefficient(f32, norm, max_norm),
                libtorch_coefficient(static_cast<float>(norm), max_norm, torch::kFloat32).item<double>())
          << norm << " " << max_norm;
      EXPECT_EQ(bs::clip_coefficient(f64, norm, max_norm),
                libtorch_coefficient(norm, max_norm, torch::kFloat64).item<double>())
          << norm << " " << max_norm;
    }
  }
  EXPECT_TRUE(std::isnan(bs::clip_coefficient(f32, std::nan(""), 1.0)));
  EXPECT_EQ(bs::clip_coefficient(f32, std::numeric_limits<double>::infinity(), 1.0), 0.0);

  const int threads = at::get_num_threads();
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    auto grads = some_grads(dtype);
    grads.push_back(torch::randn({48, 64}, dtype).t());  // not contiguous: mul_ in place
    std::vector<torch::Tensor> expected;
    const double c = bs::clip_coefficient(grads, bs::scan_gradients(grads).norm, 1.0);
    ASSERT_LT(c, 1.0);
    const auto c_tensor = torch::full({}, c, torch::TensorOptions().dtype(dtype));
    for (const auto& g : grads) expected.push_back(g.defined() ? g * c_tensor : torch::Tensor());
    at::set_num_threads(3);
    bs::scale_gradients(grads, c);
    at::set_num_threads(threads);
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) {
        EXPECT_TRUE(torch::equal(grads[i], expected[i])) << dtype << " tensor " << i;
      }
    }
    const auto before = grads[1].clone();
    bs::scale_gradients(grads, 1.0);  // nothing to do
    EXPECT_TRUE(torch::equal(grads[1], before));
  }
  // Against clip_grad_norm_ itself: the same up to the norm's last bits (LibTorch sums float32 norms).
  auto a = some_grads(), b = some_grads();
  std::vector<torch::Tensor> params;
  for (auto& g : a) {
    auto p = torch::zeros(g.defined() ? g.sizes() : torch::IntArrayRef{1}).requires_grad_(g.defined());
    if (g.defined()) p.mutable_grad() = g;
    params.push_back(p);
  }
  torch::nn::utils::clip_grad_norm_(params, 0.5);
  bs::scale_gradients(b, bs::clip_coefficient(b, bs::scan_gradients(b).norm, 0.5));
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].defined() && a[i].numel() > 0) {
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 0)) << i;
    }
  }
}

}  // namespace
