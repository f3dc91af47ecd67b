// Profile end to end on a tiny model. Oracles: the published g-SNR formula computed by hand, the
// dense autograd Hessian for the stored eigenvalues and block traces, determinism for a fixed seed,
// and the DESIGN.md paths of profile.h5 read back.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>

#include "dense_hessian.h"
#include "errors.h"
#include "h5io.h"
#include "profile.h"

using namespace bs;
using namespace bs::testing_support;

namespace {
// A profile without the spectral density (the tests that check eigenvalues and traces).
ProfileOptions without_density(int64_t topk, int64_t probes, BlockEigs block_eigs) {
  ProfileOptions o;
  o.topk = topk;
  o.probes = probes;
  o.density_runs = 0;
  o.block_eigs = block_eigs;
  return o;
}
}  // namespace

TEST(Gsnr, PublishedFormulaAndOneElementEdgeCase) {
  auto g = torch::tensor({1.0, -2.0, 3.0, 0.5}, torch::kFloat64);
  const double mean = 2.5 / 4;
  double var = 0;
  for (double x : {1.0, -2.0, 3.0, 0.5}) var += (x - mean) * (x - mean);
  const double expected = std::sqrt(1 + 4 + 9 + 0.25) / (std::sqrt(var / 3) + 1e-8);
  EXPECT_NEAR(gsnr(g), expected, 1e-12);
  EXPECT_NEAR(gsnr(torch::tensor({-0.25}, torch::kFloat64)), 0.25 / 1e-8, 1e-3);  // std NaN -> 0
}

TEST(Profile, DeterministicAndWritesDesignPaths) {
  ProfileOptions o;
  o.topk = 3;
  o.probes = 20;
  o.density_runs = 2;
  o.density_steps = 10;
  o.block_eigs = BlockEigs::All;
  Session a = tiny_session("gpt2", 4);
  Profile pa = run_profile(a.context(), o);
  Session b = tiny_session("gpt2", 4);
  Profile pb = run_profile(b.context(), o);
  EXPECT_EQ(pa.global.values, pb.global.values);
  EXPECT_EQ(pa.trace.block_trace, pb.trace.block_trace);
  EXPECT_EQ(pa.density.values, pb.density.values);

  const std::string path = ::testing::TempDir() + "/profile_test.h5";
  write_profile_h5(path, pa, a.context(), o);
  for (const char* p :
       {"global/eigenvalues", "global/residuals", "global/n_hvp", "global/trace", "global/trace_stderr", "blocks/numel",
        "blocks/trace", "blocks/avg_sharpness", "blocks/lambda_max", "blocks/gsnr", "density/grid", "density/values"})
    EXPECT_TRUE(h5_has_dataset(path, p)) << p;
  EXPECT_TRUE(h5_has_dataset(path, "blocks/name"));
  EXPECT_TRUE(h5_has_dataset(path, "blocks/kind"));
  auto ev = read_h5_dataset(path, "global/eigenvalues", "test");
  EXPECT_EQ(ev.numel(), 3);
  EXPECT_EQ(read_h5_dataset(path, "global/n_hvp", "test").item<int64_t>(), pa.n_hvp_global);
  auto avg = read_h5_dataset(path, "blocks/avg_sharpness", "test");
  auto tr = read_h5_dataset(path, "blocks/trace", "test");
  auto numel = read_h5_dataset(path, "blocks/numel", "test").to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(avg, tr / numel, 1e-14, 0));
}

TEST(Profile, EigenvaluesAndBlockLambdaMaxAgreeWithDenseHessian) {
  const ProfileOptions o = without_density(2, 4, BlockEigs::All);
  Session s = tiny_session("attention", 2);
  Profile p = run_profile(s.context(), o);
  auto H = dense_hessian(*s.net, s.train_batch(0), s.loss);
  Eigen::Map<Eigen::MatrixXd> M(H.data_ptr<double>(), H.size(0), H.size(0));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(M);
  const double top = es.eigenvalues()[H.size(0) - 1];
  EXPECT_NEAR(p.global.values[0], top, 1e-8 * std::abs(top));
  ParamTable t(s.net->named_parameters());
  for (size_t i = 0; i < t.size(); ++i) {
    const auto& e = t.at(i);
    auto sub = H.narrow(0, e.offset, e.numel).narrow(1, e.offset, e.numel).contiguous();
    Eigen::Map<Eigen::MatrixXd> S(sub.data_ptr<double>(), e.numel, e.numel);
    const double lmax = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(S).eigenvalues()[e.numel - 1];
    EXPECT_NEAR(p.blocks[i].lambda_max, lmax, 1e-7 * std::max(1.0, std::abs(lmax))) << e.name;
  }
}

// --trace-estimator hutch++: the largest multiple of 3 of --probes products; block traces within 4
// standard errors of the dense Hessian's diagonal blocks and summing to the global trace.
TEST(Profile, HutchPlusPlusTraces) {
  ProfileOptions o = without_density(1, 100, BlockEigs::None);
  o.trace_estimator = TraceEstimator::HutchPlusPlus;
  Session s = tiny_session("gpt2", 2);
  Profile p = run_profile(s.context(), o);
  EXPECT_EQ(p.trace.estimator, "Hutch++");
  EXPECT_EQ(p.trace.n_products, 99);
  Session d = tiny_session("gpt2", 2);
  const auto exact =
      block_traces(dense_hessian(*d.net, tiny_batch(d, 0), d.loss), ParamTable(d.net->named_parameters()));
  double sum = 0;
  for (size_t i = 0; i < p.blocks.size(); ++i) {
    EXPECT_LE(std::abs(p.blocks[i].trace - exact[i]), 4 * p.blocks[i].trace_stderr + 1e-10) << p.blocks[i].name;
    sum += p.blocks[i].trace;
  }
  EXPECT_NEAR(sum, p.trace.trace, 1e-9 * std::max(1.0, std::abs(p.trace.trace)));
  o.trace_estimator = TraceEstimator::HutchPlusPlus;
  o.probes = 2;  // hutch++ needs 3
  EXPECT_THROW(run_profile(s.context(), o), UserError);
}
