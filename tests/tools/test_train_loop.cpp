// Training loop. Oracles: an uninterrupted run (resume must reproduce it bit for bit) and the
// loss on the batches trained on (it must fall).
#include <gtest/gtest.h>

#include "errors.h"
#include "h5io.h"
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
  train(full, steps(8));

  Session first = open_session(tiny("train_resume"));
  TrainOptions part = steps(8);
  part.stop_at = 5;
  part.checkpoint_every = 5;
  train(first, part);
  Session second = open_session(tiny("train_resume"));
  TrainOptions rest = steps(8);
  rest.resume = true;
  train(second, rest);

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
  auto r = train(s, t);
  EXPECT_LT(r.final_train_loss, before - 0.5);
}

TEST(TrainLoop, InvalidOptionsAreRejectedBeforeWork) {
  Session s = open_session(tiny("train_bad"));
  TrainOptions t = steps(0);
  EXPECT_THROW(train(s, t), UserError);
  t = steps(3);
  t.optim.beta2 = 1.0;
  EXPECT_THROW(train(s, t), UserError);
  t = steps(3);
  t.resume = true;
  EXPECT_THROW(train(s, t), UserError);  // no checkpoint in this folder
}
