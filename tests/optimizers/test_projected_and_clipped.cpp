// APOLLO / APOLLO-Mini / GaLore and SGDClip / AdamClip. Oracles: scalar loops of the published updates
// (ALGORITHMS.md 5, 6, 8) given the same projection matrices (the random or SVD projection itself is not
// the arithmetic under test), the sorted-|g| definition of the clipping threshold, and the state sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <random>

#include "bracket_pass.h"
#include "clipped_optimizers.h"
#include "cpu_loop.h"
#include "projected_optimizers.h"
#include "reference_optimizers.h"

using namespace bs;

namespace {

using Mat = std::vector<std::vector<double>>;

Mat to_mat(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  Mat m(c.size(0), std::vector<double>(c.size(1)));
  for (int64_t i = 0; i < c.size(0); ++i)
    for (int64_t j = 0; j < c.size(1); ++j) m[i][j] = c[i][j].item<double>();
  return m;
}

Mat matmul(const Mat& a, const Mat& b, bool transpose_b = false) {
  const size_t n = a.size(), k = a[0].size(), m = transpose_b ? b.size() : b[0].size();
  Mat c(n, std::vector<double>(m, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < m; ++j)
      for (size_t l = 0; l < k; ++l) c[i][j] += a[i][l] * (transpose_b ? b[j][l] : b[l][j]);
  return c;
}

Mat transpose(const Mat& a) {
  Mat t(a[0].size(), std::vector<double>(a.size()));
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < a[0].size(); ++j) t[j][i] = a[i][j];
  return t;
}

double fro(const Mat& a) {
  double s = 0;
  for (const auto& r : a)
    for (double x : r) s += x * x;
  return std::sqrt(s);
}

torch::Tensor grad_at(int64_t rows, int64_t cols, int t) {
  auto x = torch::arange(rows * cols, torch::kFloat64).reshape({rows, cols});
  return torch::sin(x * 0.71 + 0.9 * t) + 0.05 * t;
}

// Reference APOLLO (channel or tensor scaling) / GaLore step on one projected matrix.
struct RefState {
  Mat M, V;
  double prev = -1;
};

Mat reference_step(const std::string& method, Mat& W, const Mat& G, const Mat& P, RefState& s, int t, double lr,
                   double scale, const OptimizerOptions& o) {
  const bool right = W.size() >= W[0].size();
  Mat R = right ? matmul(G, P, true) : matmul(transpose(P), G);
  if (s.M.empty()) s.M = Mat(R.size(), std::vector<double>(R[0].size(), 0.0)), s.V = s.M;
  Mat N = R;
  for (size_t i = 0; i < R.size(); ++i)
    for (size_t j = 0; j < R[0].size(); ++j) {
      s.M[i][j] = o.beta1 * s.M[i][j] + (1 - o.beta1) * R[i][j];
      s.V[i][j] = o.beta2 * s.V[i][j] + (1 - o.beta2) * R[i][j] * R[i][j];
      N[i][j] = s.M[i][j] / (std::sqrt(s.V[i][j]) + o.eps);
    }
  Mat U;
  if (method == "galore") {
    U = right ? matmul(N, P) : matmul(P, N);
    for (auto& r : U)
      for (double& x : r) x *= scale;
  } else {
    U = G;
    if (method == "apollo-mini") {
      const double f = fro(N) / (fro(R) + 1e-8);
      for (auto& r : U)
        for (double& x : r) x *= f;
    } else if (right) {  // one factor per row of G
      for (size_t i = 0; i < G.size(); ++i) {
        double nn = 0, rr = 0;
        for (size_t j = 0; j < N[0].size(); ++j) nn += N[i][j] * N[i][j], rr += R[i][j] * R[i][j];
        for (double& x : U[i]) x *= std::sqrt(nn) / (std::sqrt(rr) + 1e-8);
      }
    } else {  // one factor per column of G
      for (size_t j = 0; j < G[0].size(); ++j) {
        double nn = 0, rr = 0;
        for (size_t i = 0; i < N.size(); ++i) nn += N[i][j] * N[i][j], rr += R[i][j] * R[i][j];
        for (auto& r : U) r[j] *= std::sqrt(nn) / (std::sqrt(rr) + 1e-8);
      }
    }
    const double norm = fro(U);
    double lim = 1;
    if (s.prev >= 0) lim = std::max(norm / (s.prev + 1e-8), 1.01) / 1.01;
    s.prev = s.prev >= 0 ? norm / lim : norm;
    for (auto& r : U)
      for (double& x : r) x = x / lim * std::sqrt(scale);
  }
  const double step = lr * std::sqrt(1 - std::pow(o.beta2, t)) / (1 - std::pow(o.beta1, t));
  for (size_t i = 0; i < W.size(); ++i)
    for (size_t j = 0; j < W[0].size(); ++j) W[i][j] = (W[i][j] - step * U[i][j]) * (1 - lr * o.weight_decay);
  return U;
}

}  // namespace

TEST(Projected, ApolloApolloMiniGaloreMatchScalarReference) {
  for (const char* method : {"apollo", "apollo-mini", "galore"}) {
    for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{12, 5}, {4, 9}}) {
      torch::manual_seed(7);
      auto w = torch::randn({rows, cols}, torch::kFloat64);
      Mat W = to_mat(w);
      OptimizerInputs in({"h.0.attn.q_proj.weight"}, {w});
      in.projection.rank = std::string(method) == "apollo-mini" ? 1 : 3;
      in.projection.update_gap = 4;
      in.projection.seed = 11;
      OptimizerOptions o = default_options(method);
      o.weight_decay = 0.01;
      auto opt = make_optimizer(method, in, o);
      RefState rs;
      Mat P;
      uint64_t seed = 11 + 1;
      const double scale = std::string(method) == "apollo-mini" ? 128.0 : 1.0;
      for (int t = 1; t <= 50; ++t) {
        auto g = grad_at(rows, cols, t);
        w.mutable_grad() = g;
        if ((t - 1) % 4 == 0) {  // refresh at steps 0, gap, 2 gap (counted before the increment)
          if (std::string(method) == "galore") {
            auto [U, S, Vh] = torch::linalg_svd(g.to(torch::kFloat32), false);
            P = to_mat(rows >= cols ? Vh.narrow(0, 0, 3) : U.narrow(1, 0, std::min<int64_t>(3, rows)));
          } else {
            P = to_mat(
                apollo_projection(rows, cols, std::string(method) == "apollo-mini" ? 1 : 3, seed, torch::kFloat64));
            seed = next_projection_seed(seed);
          }
        }
        opt->step();
        reference_step(method, W, to_mat(g), P, rs, t, o.lr, scale, o);
      }
      double num = 0, den = 0;
      auto got = to_mat(w);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) num += std::pow(got[i][j] - W[i][j], 2), den += W[i][j] * W[i][j];
      EXPECT_LT(std::sqrt(num / den), 1e-12) << method << " " << rows << "x" << cols;
    }
  }
}

TEST(Projected, ApolloMiniStateIsSgdLike) {
  auto w = torch::zeros({1024, 1024}, torch::kFloat32);
  auto mini =
      make_optimizer("apollo-mini", OptimizerInputs({"h.0.mlp.fc_in.weight"}, {w}), default_options("apollo-mini"));
  auto adamw = make_optimizer("adamw", OptimizerInputs({"h.0.mlp.fc_in.weight"}, {w}), default_options("adamw"));
  EXPECT_LE(static_cast<double>(mini->state_bytes()) / adamw->state_bytes(), 0.02);
  // Not an attn/mlp matrix: the regular (full AdamW-style) group.
  EXPECT_FALSE(is_projected_param("wte.weight", w));
  EXPECT_FALSE(is_projected_param("h.0.attn.q_proj.bias", torch::zeros({4})));
}

TEST(Clip, ThresholdIsTheSortedIndex) {
  std::vector<torch::Tensor> g = {torch::tensor({-5.0, 1.0, 3.0}, torch::kFloat64),
                                  torch::tensor({2.0, -4.0}, torch::kFloat64)};
  // |g| descending: 5 4 3 2 1; c = 0.4 -> index int(5 * 0.4) = 2 -> tau = 3.
  EXPECT_DOUBLE_EQ(clip_threshold(g, 0.4, 1.0), 3.0);
  EXPECT_DOUBLE_EQ(clip_threshold(g, 0.4, 0.5), 1.5);
  EXPECT_TRUE(std::isinf(clip_threshold(g, 0.0, 1.0)));
  EXPECT_DOUBLE_EQ(clip_threshold(g, 1.0, 1.0), 0.0);
}

// The bracketed selection (order_statistic.h) against a full sort of every value, exactly, at every
// rank class: extremes, the clipping optimizers' ranks, heavy ties (zeros, a repeated value, both
// bracket ends tied), float32 and float64 tensors together, and the |g + wd p| form of AdamClip
// (computed in the tensor's dtype, as ATen's g + wd * p).
TEST(Clip, BracketedSelectionEqualsTheSortedValues) {
  torch::manual_seed(11);
  auto g32 = torch::randn({300, 257}, torch::kFloat32), g64 = torch::randn({40001}, torch::kFloat64);
  auto zeros = torch::zeros({20000}, torch::kFloat32), same = torch::full({30000}, 0.25, torch::kFloat64);
  auto heavy = torch::randn({50000}, torch::kFloat32).pow(7);  // values spread over many binades
  auto p32 = torch::randn_like(g32), p64 = torch::randn_like(g64);
  // Adversarial for the sample: every 4th value large, exactly where the stride-4 sample looks, so the
  // bracket misses low ranks and the full selection answers.
  auto pos = torch::arange(1 << 18, torch::kFloat64);
  auto strided = torch::where(pos.remainder(4) == 0, 1e3 + pos, 1e-3 * pos);
  // float32 only, decayed and not, with infinities and a run of one value: the AVX-512 pass's case.
  auto with_inf = torch::randn({70001}, torch::kFloat32);
  with_inf.index_put_({torch::indexing::Slice(0, 300)}, std::numeric_limits<float>::infinity());
  with_inf.index_put_({torch::indexing::Slice(1000, 9000)}, -1.5f);
  auto heavy_p = torch::randn_like(heavy);
  // Large sets whose bracket keeps tens of thousands of values, so the radix steps run: 40 distinct
  // values (every bin a run of ties), and values packed into [1, 1.004) (one binade: several steps).
  auto ties = torch::randint(0, 40, {1 << 20}, torch::kFloat32) * 0.125;
  auto packed = 1.0 + torch::rand({1 << 20}, torch::kFloat32) * 0.004;
  // Between 1,024 and 16,384 values the sample is every value and the rank is selected in it: float32
  // and float64 together, decayed, ties.
  auto few32 = torch::randn({3001}, torch::kFloat32), few64 = torch::randn({2000}, torch::kFloat64);
  auto few_ties = torch::randint(0, 5, {1500}, torch::kFloat32);
  const std::vector<std::vector<AbsSource>> cases = {
      {{few32, {}, 0}, {few64, torch::randn_like(few64), 0.2}, {few_ties, {}, 0}},
      {{few32.narrow(0, 0, 1100), {}, 0}},
      {{g32, {}, 0}},
      {{g32, {}, 0}, {g64, {}, 0}, {heavy, {}, 0}},
      {{zeros, {}, 0}, {g32, {}, 0}, {same, {}, 0}},
      {{g32, p32, 0.1}, {g64, p64, 0.03}, {torch::Tensor(), {}, 0}},
      {{same, {}, 0}, {zeros, {}, 0}},
      {{strided, {}, 0}},
      {{g32, p32, 0.1}, {with_inf, {}, 0}, {heavy, heavy_p, 0.5}},
      {{ties, {}, 0}},
      {{packed, {}, 0}, {g64, {}, 0}},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    const int64_t n = total_values(cases[c]);
    for (double f : {0.0, 1e-4, 0.1, 0.5, 0.9, 0.37, 1.0}) {
      const int64_t r = std::min<int64_t>(n - 1, static_cast<int64_t>(static_cast<double>(n) * f));
      const double want = rth_smallest_abs_reference(cases[c], r);
      EXPECT_EQ(rth_smallest_abs(cases[c], r), want) << "case " << c << " r " << r;
      set_loop_variant(LoopVariant::baseline);  // the portable pass (the AVX-512 one where the CPU has it above)
      EXPECT_EQ(rth_smallest_abs(cases[c], r), want) << "baseline loop: case " << c << " r " << r;
      set_loop_variant(LoopVariant::widest);
    }
  }
  // At 3 threads the sample, the pass and the radix steps are split (the sample's pieces start inside
  // sources, the steps' pieces are filled by different threads): the same values.
  const int previous = at::get_num_threads();
  at::set_num_threads(3);
  for (size_t c = 0; c < cases.size(); ++c) {
    const int64_t n = total_values(cases[c]);
    for (double f : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      const int64_t r = std::min<int64_t>(n - 1, static_cast<int64_t>(static_cast<double>(n) * f));
      EXPECT_EQ(rth_smallest_abs(cases[c], r), rth_smallest_abs_reference(cases[c], r))
          << "3 threads: case " << c << " r " << r;
    }
  }
  // 4M values: the bracket keeps ~130K at the median, more than one radix piece (64K), so the kept
  // values are narrowed by their own sub-sample and pass first (rth_smallest_kept); 1 and 3 threads.
  // Oracle: the sorted values; twenty ranks, so that a kept value lost or a stray one counted shows.
  const std::vector<AbsSource> large = {{torch::randn({1 << 22}), {}, 0}};
  const auto sorted_large = std::get<0>(large[0].g.abs().to(torch::kFloat64).sort());
  const double* want = sorted_large.data_ptr<double>();
  for (int threads : {1, 3}) {
    at::set_num_threads(threads);
    for (double f : {0.3, 0.5, 0.7, 0.9, 0.97})
      for (int64_t step : {0, 1, 2, 7}) {
        const auto r = static_cast<int64_t>((1 << 22) * f) + step;
        EXPECT_EQ(rth_smallest_abs(large, r), want[r]) << threads << " threads, r " << r;
      }
  }
  at::set_num_threads(previous);
  // The clipping threshold over a large float32 set equals the definition (sorted |g|, descending index).
  std::vector<torch::Tensor> big = {torch::randn({1 << 20}), torch::randn({3, 1000})};
  auto all = torch::cat({big[0].reshape(-1), big[1].reshape(-1)}).abs().to(torch::kFloat64);
  const auto sorted = std::get<0>(all.sort(0, /*descending=*/true));
  const int64_t idx = static_cast<int64_t>(static_cast<double>(all.numel()) * 0.1);
  EXPECT_EQ(clip_threshold(big, 0.1, 1.0), sorted[idx].item<double>());
}

// Gradients whose neighbours are alike (real ones are: rows of unequal scale) must not bias the
// strided sample: one value every n / S. Oracle: the sorted values, and bracket_misses() unchanged
// over every call: eight sets of 2^16 groups of 16 equal values (a sample taken as runs of 16
// neighbours missed 36 of their 288 calls with a binomial bracket), and rows of 512 with scales
// e^N(0,1), at 1 and 2 threads.
TEST(Clip, BracketAllowsForAlikeNeighbours) {
  const int previous = at::get_num_threads();
  torch::manual_seed(17);
  std::vector<torch::Tensor> sets;
  for (int k = 0; k < 8; ++k) sets.push_back(torch::randn({1 << 16}).repeat_interleave(16));
  sets.push_back(torch::randn({4096, 512}) * torch::randn({4096, 1}).exp());
  for (const auto& g : sets) {
    const std::vector<AbsSource> src = {{g, {}, 0}};
    const auto sorted = std::get<0>(g.abs().reshape({-1}).to(torch::kFloat64).sort());
    const double* want = sorted.data_ptr<double>();
    const int64_t misses = bracket_misses();
    for (int threads : {1, 2}) {
      at::set_num_threads(threads);
      for (double f : {0.05, 0.3, 0.5, 0.7, 0.9, 0.97})
        for (int64_t step : {0, 3, 11}) {
          const auto r = static_cast<int64_t>(static_cast<double>(g.numel()) * f) + step;
          EXPECT_EQ(rth_smallest_abs(src, r), want[r]) << threads << " threads, r " << r;
        }
    }
    EXPECT_EQ(bracket_misses(), misses) << "the bracket missed for neighbours alike";
  }
  at::set_num_threads(previous);
  // Only float32 and float64 values, and p in g's dtype: anything else is refused with an error.
  EXPECT_THROW(rth_smallest_abs({{torch::randn({4096}).to(torch::kHalf), {}, 0}}, 5), c10::Error);
  EXPECT_THROW(rth_smallest_abs({{torch::randn({4096}), torch::randn({4096}, torch::kFloat64), 0.1}}, 5), c10::Error);
}

// The kept values' stage (rth_smallest_kept): a sub-sample brackets the rank, one pass narrows, the
// radix steps finish; where the narrower bracket misses, the radix steps run on all of them. Oracle:
// the sorted values. Spans of uneven lengths, every rank class (ends, middle, near the sub-sample's
// brackets); and a periodic set whose strided sub-sample sees only its small values (every 100th of
// 409,600), so the narrow bracket misses the upper ranks and the fallback answers.
TEST(Clip, KeptValuesStageEqualsTheSortedValues) {
  const int previous = at::get_num_threads();
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.5F, 2.0F);
  std::vector<float> a(300000), b(1), c(77777);
  for (auto* v : {&a, &b, &c})
    for (float& x : *v) x = u(rng);
  std::vector<float> all(a);
  all.insert(all.end(), b.begin(), b.end());
  all.insert(all.end(), c.begin(), c.end());
  std::vector<float> sorted(all);
  std::sort(sorted.begin(), sorted.end());
  const std::vector<std::pair<const float*, int64_t>> spans = {{a.data(), 300000}, {b.data(), 1}, {c.data(), 77777}};
  const auto n = static_cast<int64_t>(all.size());
  std::vector<float> periodic(409600);
  for (size_t i = 0; i < periodic.size(); ++i) periodic[i] = i % 100 == 0 ? 0.5F + 1e-6F * i : 1.0F + 1e-6F * i;
  std::vector<float> periodic_sorted(periodic);
  std::sort(periodic_sorted.begin(), periodic_sorted.end());
  for (int threads : {1, 3}) {
    at::set_num_threads(threads);
    for (int64_t r : {int64_t{0}, int64_t{1}, n / 3, n / 2, n / 2 + 1, n - 2, n - 1})
      EXPECT_EQ(rth_smallest_kept(spans, r, 0.5F, 2.0F), sorted[static_cast<size_t>(r)]) << threads << " r " << r;
    for (int64_t r : {int64_t{5}, int64_t{4095}, int64_t{200000}, int64_t{409599}})
      EXPECT_EQ(rth_smallest_kept({{periodic.data(), 409600}}, r, 0.5F, 2.0F), periodic_sorted[static_cast<size_t>(r)])
          << threads << " periodic r " << r;
  }
  at::set_num_threads(previous);
}

// The radix steps' filter (bracket_pass.h): the keys in [lo, hi], in order, against std::copy_if, for
// 32- and 64-bit keys, portable and (where the CPU has it) AVX-512, with ranges at both ends of the key
// space (the AVX-512 compare wraps below lo) and lengths that leave a tail past the 16-key steps.
TEST(Clip, KeyFilterKeepsTheKeysInRangeInOrder) {
  std::mt19937_64 rng(5);
  for (const int64_t n : {0, 1, 15, 16, 17, 64, 1000, 4099}) {
    std::vector<uint32_t> k32(static_cast<size_t>(n));
    std::vector<uint64_t> k64(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {  // a few distinct keys (ties at the ends), and the extremes
      const uint64_t r = rng();
      k32[i] = i % 7 == 0 ? (i % 14 == 0 ? 0u : ~0u) : static_cast<uint32_t>(1000 + r % 64);
      k64[i] = i % 7 == 0 ? (i % 14 == 0 ? 0ull : ~0ull) : 1000 + r % 64;
    }
    for (const auto& [lo, hi] : std::vector<std::pair<uint64_t, uint64_t>>{
             {1010, 1030}, {1000, 1000}, {0, 1020}, {1040, ~0ull}, {0, ~0ull}, {2000, 3000}}) {
      const auto lo32 = static_cast<uint32_t>(std::min<uint64_t>(lo, ~0u)),
                 hi32 = static_cast<uint32_t>(std::min<uint64_t>(hi, ~0u));
      std::vector<uint32_t> want32, got32(static_cast<size_t>(n + 16)), wide32(static_cast<size_t>(n + 16));
      std::copy_if(k32.begin(), k32.end(), std::back_inserter(want32),
                   [&](uint32_t x) { return x >= lo32 && x <= hi32; });
      got32.resize(static_cast<size_t>(keep_keys_portable<uint32_t>(k32.data(), n, lo32, hi32, got32.data())));
      EXPECT_EQ(got32, want32) << "portable, 32-bit keys, n " << n << " [" << lo << ", " << hi << "]";
      if (use_avx512()) {
        wide32.resize(static_cast<size_t>(keep_keys_avx512(k32.data(), n, lo32, hi32, wide32.data())));
        EXPECT_EQ(wide32, want32) << "AVX-512, n " << n << " [" << lo << ", " << hi << "]";
      }
      std::vector<uint64_t> want64, got64(static_cast<size_t>(n + 16));
      std::copy_if(k64.begin(), k64.end(), std::back_inserter(want64), [&](uint64_t x) { return x >= lo && x <= hi; });
      got64.resize(static_cast<size_t>(keep_keys_portable<uint64_t>(k64.data(), n, lo, hi, got64.data())));
      EXPECT_EQ(got64, want64) << "portable, 64-bit keys, n " << n << " [" << lo << ", " << hi << "]";
    }
  }
}

// The bracket pass's AVX-512 chunk (bracket_pass.h) against the portable loop and a plain count:
// the same values kept, in order, the same count below, nothing written past the kept values, for
// lengths around its 64-value steps, with and without the decayed form, infinities, NaN, zeros of
// both signs and ties at both ends of the bracket; for brackets from 0 and to infinity, of one value,
// and those the vector loop hands to the portable one (-0 or below as lo, hi below lo, hi NaN).
TEST(Clip, BracketChunkKeepsAndCountsAsThePortableLoop) {
  if (!use_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU: only the portable loop runs";
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (const int64_t n : {0, 1, 15, 63, 64, 65, 200, 16384 + 7}) {
    std::vector<float> g(static_cast<size_t>(n)), p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      g[i] = i % 17 == 3 ? 0.5f : (i % 29 == 5 ? 1.25f : normal(rng));  // ties at the bracket's ends
      p[i] = normal(rng);
    }
    if (n > 12) {
      g[7] = std::numeric_limits<float>::infinity();
      g[9] = std::numeric_limits<float>::quiet_NaN();
      g[10] = -std::numeric_limits<float>::infinity();
      g[11] = 0.0f;
      g[12] = -0.0f;
    }
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<std::pair<float, float>> brackets = {{0.5f, 1.25f}, {0.0f, 0.5f}, {1.25f, inf},   {0.0f, inf},
                                                           {0.5f, 0.5f},  {inf, inf},   {-0.0f, 1.25f}, {-1.0f, 0.5f},
                                                           {1.25f, 0.5f}, {0.5f, nan}};
    for (const auto& bracket : brackets)
      for (const bool decay : {false, true}) {
        const float lo = bracket.first, hi = bracket.second;
        const float* pp = decay ? p.data() : nullptr;
        const float wd = decay ? 0.3f : 0.0f;
        std::vector<float> want;
        int64_t want_below = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float v = abs_value<float>(g.data(), pp, wd, i);
          want_below += v < lo;
          if (v >= lo && v <= hi) want.push_back(v);
        }
        const float canary = -7.0f;
        std::vector<float> wide(static_cast<size_t>(n + 16), canary), portable(static_cast<size_t>(n + 16));
        int64_t below_wide = 5, below_portable = 5;  // both add to what is there
        const int64_t kept_wide = bracket_chunk_avx512(g.data(), pp, wd, n, lo, hi, wide.data(), below_wide);
        const int64_t kept_portable =
            bracket_chunk_portable<float, float>(g.data(), pp, wd, n, lo, hi, portable.data(), below_portable);
        const std::string at = "n " + std::to_string(n) + (decay ? " decayed" : "") + " [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "]";
        EXPECT_EQ(below_wide, 5 + want_below) << at;
        EXPECT_EQ(below_portable, 5 + want_below) << at;
        ASSERT_EQ(kept_wide, static_cast<int64_t>(want.size())) << at;
        ASSERT_EQ(kept_portable, static_cast<int64_t>(want.size())) << at;
        EXPECT_TRUE(std::equal(want.begin(), want.end(), wide.begin())) << at;
        EXPECT_TRUE(std::equal(want.begin(), want.end(), portable.begin())) << at;
        // The vector loop stores only the kept lanes; the portable loop (a tail, or the whole chunk for
        // the brackets it is handed) stores each value at the next free slot (kept or not), so at most
        // one slot past the kept values is written, and only when it ran.
        const bool vector_loop = lo >= 0 && lo <= hi;
        const int64_t untouched = n % 64 == 0 && vector_loop ? kept_wide : kept_wide + 1;
        for (int64_t i = untouched; i < n + 16; ++i) EXPECT_EQ(wide[i], canary) << at << " slot " << i;
      }
  }
}

// The pass over two chunks stepped together (order_statistic.cpp pairs a thread's two halves this way)
// counts and keeps what the portable loop does over each chunk alone: the same count below and the
// same kept values (in another order), for every mix of lengths around the 64-value steps and of
// decayed and plain chunks (each with its own decay); nothing written past the room it is given.
TEST(Clip, BracketPairKeepsAndCountsAsTwoChunks) {
  if (!use_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU: only the portable loop runs";
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  auto make = [&](int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[i] = i % 13 == 2 ? 1.25f : (i % 31 == 4 ? 0.5f : normal(rng));
    if (n > 10) x[6] = std::numeric_limits<float>::quiet_NaN();
    return x;
  };
  const std::vector<int64_t> lengths = {0, 1, 63, 64, 65, 200, 16384, 16384 + 7};
  const std::vector<std::pair<float, float>> brackets = {
      {0.5f, 1.25f}, {0.0f, std::numeric_limits<float>::infinity()}, {1.25f, 0.5f}};
  for (const auto& bracket : brackets)
    for (const int64_t n0 : lengths)
      for (const int64_t n1 : lengths)
        for (const int decays : {0, 1, 2, 3}) {
          const float lo = bracket.first, hi = bracket.second;
          const std::vector<float> g0 = make(n0), p0 = make(n0), g1 = make(n1), p1 = make(n1);
          const float* pp0 = decays & 1 ? p0.data() : nullptr;
          const float* pp1 = decays & 2 ? p1.data() : nullptr;
          const float wd0 = 0.3f, wd1 = 0.7f;
          std::vector<float> want(static_cast<size_t>(n0 + n1 + 16));
          int64_t want_below = 0;
          int64_t want_kept =
              bracket_chunk_portable<float, float>(g0.data(), pp0, wd0, n0, lo, hi, want.data(), want_below);
          want_kept += bracket_chunk_portable<float, float>(g1.data(), pp1, wd1, n1, lo, hi, want.data() + want_kept,
                                                            want_below);
          want.resize(static_cast<size_t>(want_kept));
          const float canary = -7.0f;
          std::vector<float> got(static_cast<size_t>(n0 + n1 + 16), canary);
          int64_t below = 3;  // adds to what is there
          const int64_t kept =
              bracket_pair_avx512(g0.data(), pp0, wd0, n0, g1.data(), pp1, wd1, n1, lo, hi, got.data(), below);
          const std::string at = "n " + std::to_string(n0) + ", " + std::to_string(n1) + " decays " +
                                 std::to_string(decays) + " [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
          EXPECT_EQ(below, 3 + want_below) << at;
          ASSERT_EQ(kept, want_kept) << at;
          std::vector<float> kept_values(got.begin(), got.begin() + kept);
          std::sort(kept_values.begin(), kept_values.end());
          std::sort(want.begin(), want.end());
          EXPECT_EQ(kept_values, want) << at;
          // The portable tails store each value at the next free slot, kept or not: one slot past at most.
          for (int64_t i = kept + 1; i < n0 + n1 + 16; ++i) EXPECT_EQ(got[i], canary) << at << " slot " << i;
        }
}

TEST(Clip, SgdClipAndAdamClipMatchScalarReference) {
  for (const char* method : {"sgd-clip", "adam-clip"}) {
    torch::manual_seed(3);
    std::vector<torch::Tensor> params = {torch::randn({7}, torch::kFloat64), torch::randn({1023}, torch::kFloat64)};
    std::vector<std::vector<double>> p, m, v;
    for (auto& t : params) {
      auto c = t.contiguous();
      p.emplace_back(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
      m.emplace_back(t.numel(), 0.0);
      v.emplace_back(t.numel(), 0.0);
    }
    OptimizerOptions o = default_options(method);
    o.weight_decay = 0.01;
    o.lr = 1e-2;
    OptimizerInputs in({"a", "b"}, params);
    auto opt = make_optimizer(method, in, o);
    const double c = std::string(method) == "sgd-clip" ? 0.1 : 0.5;
    for (int t = 1; t <= 50; ++t) {
      std::vector<std::vector<double>> g(2), gd(2);
      std::vector<double> all;
      for (size_t i = 0; i < 2; ++i) {
        auto gt = torch::sin(torch::arange(params[i].numel(), torch::kFloat64) * (0.3 + i) + t);
        params[i].mutable_grad() = gt;
        g[i].assign(gt.data_ptr<double>(), gt.data_ptr<double>() + gt.numel());
        for (size_t k = 0; k < g[i].size(); ++k) {
          const double x = std::string(method) == "adam-clip" ? g[i][k] + o.weight_decay * p[i][k] : g[i][k];
          gd[i].push_back(x);
          all.push_back(std::abs(x));
        }
      }
      std::sort(all.begin(), all.end(), std::greater<double>());
      const double tau = all[static_cast<size_t>(all.size() * c)];
      auto clip = [tau](double x) { return std::abs(x) < tau ? x : (x > 0 ? tau : -tau); };
      for (size_t i = 0; i < 2; ++i)
        for (size_t k = 0; k < p[i].size(); ++k) {
          if (std::string(method) == "sgd-clip") {
            const double d = clip(g[i][k]) + o.weight_decay * p[i][k];
            m[i][k] = t == 1 ? d : o.beta1 * m[i][k] + d;
            p[i][k] -= o.lr * m[i][k];
          } else {
            m[i][k] = o.beta1 * m[i][k] + (1 - o.beta1) * clip(gd[i][k]);
            v[i][k] = o.beta2 * v[i][k] + (1 - o.beta2) * gd[i][k] * gd[i][k];
            const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
            p[i][k] -= o.lr / bc1 * m[i][k] / (std::sqrt(v[i][k]) / std::sqrt(bc2) + o.eps);
          }
        }
      opt->step();
    }
    for (size_t i = 0; i < 2; ++i) {
      auto ref = torch::tensor(p[i], torch::kFloat64);
      EXPECT_LT((params[i] - ref).norm().item<double>() / ref.norm().item<double>(), 1e-12) << method;
    }
  }
}

// With weight decay 0 the official AdamClip leaves the gradient as it is (it adds wd p only where
// wd != 0), so the threshold is over |g| alone and the parameters are not read for it: a parameter
// that is not finite (g + 0 p would be NaN there, counted above every value) must not move tau.
TEST(Clip, AdamClipWithoutDecayTakesTheThresholdOverTheGradientAlone) {
  torch::manual_seed(5);
  std::vector<torch::Tensor> params = {torch::full({1}, std::numeric_limits<double>::infinity(), torch::kFloat64),
                                       torch::randn({1023}, torch::kFloat64)};
  const auto b0 = params[1].clone();
  // a's |g| below tau: counted as NaN instead (above every value), it would move tau up one rank
  std::vector<torch::Tensor> grads = {torch::full({1}, 1e-3, torch::kFloat64), torch::randn({1023}, torch::kFloat64)};
  for (size_t i = 0; i < 2; ++i) params[i].mutable_grad() = grads[i];
  OptimizerOptions o = default_options("adam-clip");
  ASSERT_EQ(o.weight_decay, 0.0);
  o.lr = 1e-2;
  OptimizerInputs in({"a", "b"}, params);
  make_optimizer("adam-clip", in, o)->step();
  std::vector<double> all;  // the official threshold: |g| at descending index int(N c), c = 0.5
  for (const auto& g : grads)
    for (int64_t k = 0; k < g.numel(); ++k) all.push_back(std::abs(g[k].item<double>()));
  std::sort(all.begin(), all.end(), std::greater<double>());
  const double tau = all[all.size() / 2];
  ASSERT_NE(tau, all[all.size() / 2 - 1]);  // what a NaN counted first would have given
  const double bc1 = 1 - o.beta1, bc2 = 1 - o.beta2;
  for (int64_t k = 0; k < 1023; ++k) {
    const double g = grads[1][k].item<double>(), clipped = std::abs(g) < tau ? g : (g > 0 ? tau : -tau);
    const double m = (1 - o.beta1) * clipped, v = (1 - o.beta2) * g * g;
    const double want = b0[k].item<double>() - o.lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + o.eps);
    EXPECT_NEAR(params[1][k].item<double>(), want, 1e-15 * std::max(1.0, std::abs(want))) << k;
  }
}
