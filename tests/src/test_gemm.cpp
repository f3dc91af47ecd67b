// gemm: oneDNN's float32 products against the float64 product of the same operands, within the
// rounding bound of any float32 summation order, |C - C64| <= (K + 2) u (|A| |B| + |C0|), u = 2^-24
// (Higham, Accuracy and Stability of Numerical Algorithms, 3.5); LibTorch's backend, float64 and
// recorded products against LibTorch's own functions, exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>

#include "gemm.h"
#include "small_gemm.h"

namespace bs {
namespace {

using torch::Tensor;

// How far c (float32) lies outside the rounding bound around the float64 product c0 + a b: the
// largest elementwise |c - exact| - (K + 2) u bound, so <= 0 when within it; +inf when c is not a
// float32 tensor of the product's shape.
double rounding_excess(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor& c0 = {}) {
  const auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  auto exact = torch::matmul(a64, b64), bound = torch::matmul(a64.abs(), b64.abs());
  if (c0.defined()) {
    exact = exact + c0.to(torch::kFloat64);
    bound = bound + c0.to(torch::kFloat64).abs();
  }
  if (c.scalar_type() != torch::kFloat32 || c.sizes() != exact.sizes()) return INFINITY;
  const double u = std::ldexp(1.0, -24);
  const int64_t K = a.size(-1);
  return ((c.to(torch::kFloat64) - exact).abs() - (K + 2) * u * bound).max().item<double>();
}

class Gemm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gemm::onednn_available()) GTEST_SKIP() << "oneDNN's sgemm is not loaded with this LibTorch";
  }
  gemm::ScopedBackend onednn{gemm::Backend::OneDnn};
  torch::Tensor randn(std::vector<int64_t> shape) { return torch::randn(shape, torch::kFloat32); }
};

TEST_F(Gemm, ChoosesOneDnnForFloat32) {
  EXPECT_EQ(gemm::backend(), gemm::Backend::OneDnn);
  EXPECT_EQ(gemm::describe(gemm::Backend::OneDnn).rfind("oneDNN", 0), 0u);
}

// Every layout of the two operands: plain, transposed views, rows with a padded leading dimension,
// a strided slice that fits neither (copied), and single rows and columns.
TEST_F(Gemm, MatrixProductOfEveryOperandLayout) {
  const int64_t M = 37, K = 53, N = 29;
  const std::vector<std::pair<const char*, std::function<Tensor(int64_t, int64_t)>>> layouts = {
      {"contiguous",
       [&](int64_t r, int64_t c) {
         return randn({r, c});
       }},
      {"transposed",
       [&](int64_t r, int64_t c) {
         return randn({c, r}).t();
       }},
      {"padded rows",
       [&](int64_t r, int64_t c) {
         return randn({r, c + 7}).narrow(1, 3, c);
       }},
      {"padded transposed",
       [&](int64_t r, int64_t c) {
         return randn({c, r + 5}).narrow(1, 2, r).t();
       }},
      {"strided",
       [&](int64_t r, int64_t c) {
         return randn({2 * r, 2 * c}).slice(0, 0, 2 * r, 2).slice(1, 0, 2 * c, 2);
       }},
  };
  for (const auto& [la, make_a] : layouts) {
    for (const auto& [lb, make_b] : layouts) {
      SCOPED_TRACE(std::string(la) + " x " + lb);
      const auto a = make_a(M, K), b = make_b(K, N);
      EXPECT_LE(rounding_excess(gemm::mm(a, b), a, b), 0.0);
    }
  }
  for (auto [m, k, n] : {std::array<int64_t, 3>{1, K, N}, {M, 1, N}, {M, K, 1}, {1, 1, 1}}) {
    const auto a = randn({m, k}), b = randn({n, k}).t();
    EXPECT_LE(rounding_excess(gemm::mm(a, b), a, b), 0.0);
  }
}

TEST_F(Gemm, AccumulatingProducts) {
  const auto a = randn({31, 40}), b = randn({24, 40}).t(), bias = randn({24}), c0 = randn({31, 24});
  SCOPED_TRACE("addmm, bias");
  EXPECT_LE(rounding_excess(gemm::addmm(bias, a, b), a, b, bias.expand({31, 24})), 0.0);
  // The bias row copied into each row gives the bits of the broadcast matrix taken as c.
  EXPECT_TRUE(torch::equal(gemm::addmm(bias, a, b), gemm::addmm(bias.expand({31, 24}), a, b)));
  SCOPED_TRACE("addmm, matrix");
  const auto c0_before = c0.clone();
  EXPECT_LE(rounding_excess(gemm::addmm(c0, a, b), a, b, c0), 0.0);
  EXPECT_TRUE(torch::equal(c0, c0_before));  // out of place
  SCOPED_TRACE("addmm_");
  auto c = c0.clone();
  EXPECT_EQ(gemm::addmm_(c, a, b).data_ptr(), c.data_ptr());  // in place
  EXPECT_LE(rounding_excess(c, a, b, c0), 0.0);
  auto ct = c0.t().contiguous().t();  // column-major: not writable row by row, LibTorch's addmm_
  gemm::addmm_(ct, a, b);
  EXPECT_LE(rounding_excess(ct, a, b, c0), 0.0);
}

TEST_F(Gemm, BatchedProducts) {
  const int64_t B = 6, M = 17, K = 9, N = 13;
  const auto a = randn({B, K, M}).transpose(1, 2), b = randn({B, K, N});
  EXPECT_LE(rounding_excess(gemm::bmm(a, b), a, b), 0.0);
  const auto shared = randn({1, K, N}).expand({B, K, N});  // one matrix for every batch (stride 0)
  EXPECT_LE(rounding_excess(gemm::bmm(a, shared), a, shared), 0.0);
  const auto c0 = randn({B, M, N});
  auto c = c0.clone();
  gemm::baddbmm_(c, a, b.transpose(1, 2).contiguous().transpose(1, 2));
  EXPECT_LE(rounding_excess(c, a, b, c0), 0.0);
}

// Attention's heads as they lie: [B, H, T, d] views of [B, T, H, d] (and transposed) operands, and
// a result written into such a view; float64 goes to LibTorch's matmul (the same values exactly).
TEST_F(Gemm, FourDimensionalBatchesOfStridedHeads) {
  const int64_t B = 3, H = 4, T = 11, d = 5;
  const auto q = randn({B, T, H, d}).transpose(1, 2), k = randn({B, T, H, d}).transpose(1, 2);
  const auto scores = gemm::bmm(q, k.transpose(-2, -1));
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{B, H, T, T}));
  EXPECT_LE(rounding_excess(scores, q, k.transpose(-2, -1)), 0.0);
  auto out = torch::empty({B, T, H, d}).transpose(1, 2);  // rows of d, H d apart
  gemm::bmm_out(out, scores, k);
  EXPECT_LE(rounding_excess(out, scores, k), 0.0);
  EXPECT_TRUE(out.transpose(1, 2).is_contiguous());
  const auto qd = q.to(torch::kFloat64), kd = k.to(torch::kFloat64);
  EXPECT_TRUE(torch::equal(gemm::bmm(qd, kd.transpose(-2, -1)), torch::matmul(qd, kd.transpose(-2, -1))));
  auto outd = torch::empty({B, T, H, T}, torch::kFloat64).transpose(1, 2);
  gemm::bmm_out(outd, qd, kd.transpose(-2, -1));
  EXPECT_TRUE(torch::equal(outd, torch::matmul(qd, kd.transpose(-2, -1))));
}

// Grouped-query attention's heads as they lie: keys and values of G heads, each serving its group of
// H / G query heads (the oracle repeats them, as Hugging Face's repeat_kv), and gradients of G heads
// summed over each group inside the products (oracle: the H products' sum over the group in float64,
// within the rounding of one product of inner size rep T); the sums' bits are those of 1 thread at 3.
// Float64 goes to LibTorch's ops on the repeated heads and the sum over each group, the same values.
TEST_F(Gemm, GroupedHeadsServeTheirGroupAndSumIntoIt) {
  const int64_t B = 2, H = 6, T = 9, d = 4;
  for (const int64_t G : {3, 1}) {
    SCOPED_TRACE("key/value heads " + std::to_string(G));
    const int64_t rep = H / G;
    const auto q = randn({B, T, H, d}).transpose(1, 2), k = randn({B, T, G, d}).transpose(1, 2);
    const auto k_full = k.repeat_interleave(rep, 1);
    const auto scores = gemm::bmm(q, k.transpose(-2, -1));
    ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{B, H, T, T}));
    EXPECT_LE(rounding_excess(scores, q, k_full.transpose(-2, -1)), 0.0);
    auto out = torch::empty({B, T, H, d}).transpose(1, 2);
    gemm::bmm_out(out, scores, k);  // k as the values
    EXPECT_LE(rounding_excess(out, scores, k_full), 0.0);
    auto summed = [&](const Tensor& t) { return t.view({B, G, rep, T, d}).sum(2); };
    auto dk = torch::empty({B, T, G, d}).transpose(1, 2);
    gemm::bmm_out(dk, scores.transpose(-2, -1), q);
    const auto a64 = scores.transpose(-2, -1).to(torch::kFloat64), b64 = q.to(torch::kFloat64);
    const auto exact = summed(torch::matmul(a64, b64)), bound = summed(torch::matmul(a64.abs(), b64.abs()));
    EXPECT_LE(
        ((dk.to(torch::kFloat64) - exact).abs() - (rep * T + 2) * std::ldexp(1.0, -24) * bound).max().item<double>(),
        0.0);
    const int threads = at::get_num_threads();
    at::set_num_threads(threads == 1 ? 3 : 1);
    auto dk_other = torch::empty({B, T, G, d}).transpose(1, 2);
    gemm::bmm_out(dk_other, scores.transpose(-2, -1), q);
    at::set_num_threads(threads);
    EXPECT_TRUE(torch::equal(dk_other.view(torch::kInt32), dk.view(torch::kInt32)));
    const auto qd = q.to(torch::kFloat64), kd = k.to(torch::kFloat64), sd = scores.to(torch::kFloat64);
    EXPECT_TRUE(torch::equal(gemm::bmm(qd, kd.transpose(-2, -1)),
                             torch::matmul(qd, kd.repeat_interleave(rep, 1).transpose(-2, -1))));
    auto dkd = torch::empty({B, T, G, d}, torch::kFloat64).transpose(1, 2);
    gemm::bmm_out(dkd, sd.transpose(-2, -1), qd);
    EXPECT_TRUE(torch::equal(dkd, summed(torch::matmul(sd.transpose(-2, -1), qd))));
  }
  EXPECT_THROW(gemm::bmm(randn({2, 4, 3, 5}), randn({2, 3, 5, 3})), c10::Error);  // 3 heads do not divide 4
}

TEST_F(Gemm, LinearOverLeadingDimensions) {
  const auto x = randn({3, 5, 16}), W = randn({8, 16}), b = randn({8});
  const auto y = gemm::linear(x, W, b);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 5, 8}));
  EXPECT_LE(rounding_excess(y.reshape({15, 8}), x.reshape({15, 16}), W.t(), b.expand({15, 8})), 0.0);
  EXPECT_LE(rounding_excess(gemm::linear(x, W).reshape({15, 8}), x.reshape({15, 16}), W.t()), 0.0);
}

// Oracle: LibTorch's functions themselves, bit for bit, wherever gemm hands the product to them.
// padded_rows: rows 16 values further apart where they would be a multiple of 1024 floats apart, else
// contiguous; as a product's transposed operand (dy^T x) and as a plain one (dy W) it gives the bits
// of the same values laid out contiguously.
TEST_F(Gemm, PaddedRowsGiveTheBitsOfContiguousOperands) {
  for (const int64_t cols : {int64_t{1024}, int64_t{2048}, int64_t{1000}}) {
    auto dy = gemm::padded_rows(64, cols, torch::kFloat32);
    EXPECT_EQ(dy.size(0), 64);
    EXPECT_EQ(dy.size(1), cols);
    EXPECT_EQ(dy.stride(1), 1);
    EXPECT_EQ(dy.stride(0), cols % 1024 == 0 ? cols + 16 : cols);
    dy.copy_(randn({64, cols}));
    const auto plain = dy.contiguous(), x = randn({64, 40}), W = randn({cols, 24});
    EXPECT_TRUE(torch::equal(gemm::mm(dy.t(), x), gemm::mm(plain.t(), x))) << cols;
    EXPECT_TRUE(torch::equal(gemm::mm(dy, W), gemm::mm(plain, W))) << cols;
  }
}

TEST_F(Gemm, HandsOtherProductsToLibTorch) {
  const auto a = torch::randn({12, 7}, torch::kFloat64), b = torch::randn({7, 5}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(gemm::mm(a, b), torch::mm(a, b)));  // float64
  const auto af = a.to(torch::kFloat32), bf = b.to(torch::kFloat32);
  {
    gemm::ScopedBackend libtorch(gemm::Backend::LibTorch);
    EXPECT_TRUE(torch::equal(gemm::mm(af, bf), torch::mm(af, bf)));
    EXPECT_TRUE(torch::equal(gemm::linear(af, bf.t()), at::linear(af, bf.t())));
  }
  EXPECT_EQ(gemm::backend(), gemm::Backend::OneDnn);  // the scope restored it
  // A product autograd records stays differentiable: d/da sum(a b) = 1 b^T.
  const auto ag = af.clone().requires_grad_(true);
  auto y = gemm::mm(ag, bf);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_TRUE(torch::allclose(ag.grad(), torch::ones({12, 5}).mm(bf.t())));
}

// small_gemm's kernel (attention's per-head products) on raw storage: every triangle, A stored by rows
// and transposed, B read in place and packed, results at a padded leading dimension, accumulating, and
// sizes around its blocks (12 or 6 rows, 16-float vectors, 32- and 64-column blocks). Oracle: the
// float64 product, within the rounding bound above; the padding and (for ResultLower) nothing but C is
// written. With A zero where its triangle says, the result is also the untriangled product's, exactly
// (the skipped terms are zeros). Transposed storage (B packed by 16 x 16 register transposes) gives the
// bits of the operands stored by rows.
TEST(SmallGemm, EveryTriangleLayoutAndSizeWithinTheRoundingBound) {
  if (!small_gemm::available()) GTEST_SKIP() << "no AVX-512F here: the kernel is not used";
  using small_gemm::Triangle;
  torch::manual_seed(21);
  const double nan = std::nan("");
  for (const int64_t T : {1, 5, 12, 13, 17, 40, 128}) {
    for (const int64_t d : {1, 7, 16, 33, 64, 70}) {
      for (const bool accumulate : {false, true}) {
        for (const bool transposed : {false, true}) {  // A transposed; B packed (transposed storage) too
          SCOPED_TRACE("T " + std::to_string(T) + ", d " + std::to_string(d) + (accumulate ? ", accumulating" : "") +
                       (transposed ? ", transposed operands" : ""));
          // A product on [rows, cols] matrices `a` (zeroed where the triangle says), `b`, into a C of
          // ldc = cols + 3 holding c0 (NaN for ResultLower without accumulation: nothing may read it).
          auto check = [&](Triangle tri, Tensor a, const Tensor& b) {
            if (tri == Triangle::ALower) a = a.tril();
            if (tri == Triangle::AUpper) a = a.triu();
            const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
            const auto as = transposed ? a.t().contiguous() : a.contiguous();  // storage: a, or a^T by rows
            const auto bs = transposed ? b.t().contiguous() : b.contiguous();
            const auto c0 = torch::randn({M, N});
            auto cbuf = torch::full({M, N + 3}, 7.0f);
            if (accumulate || tri != Triangle::ResultLower)
              cbuf.narrow(1, 0, N).copy_(c0);
            else
              cbuf.narrow(1, 0, N).fill_(nan);
            auto run = [&](Triangle t) {
              auto c = cbuf.clone();
              small_gemm::product(M, N, K, as.data_ptr<float>(), transposed ? 1 : K, transposed ? M : 1,
                                  bs.data_ptr<float>(), transposed ? 1 : N, transposed ? K : 1, c.data_ptr<float>(),
                                  N + 3, accumulate, t);
              return c;
            };
            const auto c = run(tri);
            EXPECT_TRUE(torch::equal(c.narrow(1, N, 3), cbuf.narrow(1, N, 3))) << "padding written";
            if (transposed) {  // packed B (and A read down its columns): the bits of the operands by rows
              auto by_rows = cbuf.clone();
              const auto ar = a.contiguous(), br = b.contiguous();
              small_gemm::product(M, N, K, ar.data_ptr<float>(), K, 1, br.data_ptr<float>(), N, 1,
                                  by_rows.data_ptr<float>(), N + 3, accumulate, tri);
              EXPECT_TRUE(torch::equal(c.view(torch::kInt32), by_rows.view(torch::kInt32)))  // NaNs left as they were
                  << "packing changed bits, " << static_cast<int>(tri);
            }
            auto got = c.narrow(1, 0, N);
            const Tensor base = accumulate ? c0 : Tensor();
            if (tri == Triangle::ResultLower) {  // only the lower triangle is asked for
              const auto lower = torch::ones({M, N}, torch::kBool).tril();
              const auto exact = torch::matmul(a.to(torch::kFloat64), b.to(torch::kFloat64));
              const auto bound = torch::matmul(a.to(torch::kFloat64).abs(), b.to(torch::kFloat64).abs());
              auto err =
                  (got.to(torch::kFloat64) - exact - (accumulate ? c0.to(torch::kFloat64) : torch::zeros_like(exact)))
                      .abs() -
                  (K + 2) * std::ldexp(1.0, -24) *
                      (bound + (accumulate ? c0.to(torch::kFloat64).abs() : torch::zeros_like(bound)));
              EXPECT_LE(err.masked_select(lower).max().item<double>(), 0.0) << "ResultLower";
            } else {
              EXPECT_LE(rounding_excess(got.contiguous(), a, b, base), 0.0) << static_cast<int>(tri);
              EXPECT_TRUE(torch::equal(got, run(Triangle::None).narrow(1, 0, N))) << static_cast<int>(tri);
            }
          };
          check(Triangle::None, torch::randn({T, d}), torch::randn({d, T}));
          check(Triangle::ResultLower, torch::randn({T, d}), torch::randn({d, T}));  // scores, dP
          check(Triangle::ALower, torch::randn({T, T}), torch::randn({T, d}));       // P v, dS k
          check(Triangle::AUpper, torch::randn({T, T}), torch::randn({T, d}));       // P^T gO, dS^T q
        }
      }
    }
  }
}

}  // namespace
}  // namespace bs
