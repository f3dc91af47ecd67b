// all_finite against its oracle, LibTorch's isfinite(t).all(): float32 and float64 tensors with one
// NaN, +inf or -inf at the start, in the middle of another thread's share, or in the loop's tail;
// the largest finite values, subnormals and signed zeros; non-contiguous views; other dtypes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

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

}  // namespace
