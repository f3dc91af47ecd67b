// Data sources. Oracles: the batching contract of DESIGN.md (rows [iB,(i+1)B) in order, wrapping),
// permutation properties of shuffling, next-token targets, and exact values written to .h5 files.
#include <gtest/gtest.h>

#include <cstdio>

#include "data.h"
#include "errors.h"
#include "h5io.h"

using namespace bs;

TEST(Data, RowsInOrderWrap) {
  EXPECT_EQ(batch_rows(10, 4, 0, 0, false), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(batch_rows(10, 4, 2, 0, false), (std::vector<int64_t>{8, 9, 0, 1}));
}

TEST(Data, ShuffledEpochIsAPermutationAndSeeded) {
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < 5; ++i) {
    auto r = batch_rows(10, 2, i, 7, true);
    seen.insert(seen.end(), r.begin(), r.end());
  }
  auto sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t k = 0; k < 10; ++k) EXPECT_EQ(sorted[k], k);
  EXPECT_EQ(batch_rows(10, 2, 3, 7, true), batch_rows(10, 2, 3, 7, true));
  EXPECT_NE(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Data, TextBatchesAreNextTokenWindows) {
  DataOptions o;
  o.name = "brown";
  o.batch_size = 3;
  o.seq_len = 16;
  o.seed = 5;
  auto d = make_data(o);
  auto b = d->train_batch(4);
  ASSERT_EQ(b.inputs.sizes(), (std::vector<int64_t>{3, 16}));
  EXPECT_TRUE(torch::equal(b.inputs.narrow(1, 1, 15), b.targets.narrow(1, 0, 15)));
  EXPECT_TRUE(torch::equal(d->train_batch(4).inputs, b.inputs));
  EXPECT_FALSE(torch::equal(d->train_batch(5).inputs, b.inputs));
  EXPECT_GT(d->n_val_batches(), 100);
  // Byte unigram entropy of English text: about 3 nats (4.4 bits).
  EXPECT_GT(d->unigram_entropy(), 2.5);
  EXPECT_LT(d->unigram_entropy(), 3.5);
}

TEST(Data, H5RowsAndErrors) {
  const std::string path = testing::TempDir() + "/data_test.h5";
  {
    H5Output out(path);
    out.write("inputs", torch::arange(12, torch::kFloat64).reshape({6, 2}));
    out.write("targets", torch::arange(6, torch::kInt64));
    out.commit();
  }
  DataOptions o;
  o.name = path;
  o.batch_size = 4;
  auto d = make_data(o);
  auto b = d->train_batch(1);  // rows 4, 5, 0, 1
  EXPECT_TRUE(torch::equal(b.targets, torch::tensor({4, 5, 0, 1}, torch::kInt64)));
  EXPECT_EQ(b.inputs[0][1].item<double>(), 9.0);
  const std::string bad = testing::TempDir() + "/data_bad.h5";
  {
    H5Output out(bad);
    out.write("inputs", torch::zeros({3, 2}, torch::kFloat64));
    out.commit();
  }
  o.name = bad;
  try {
    make_data(o);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/targets"), std::string::npos);
  }
  std::remove(path.c_str());
  std::remove(bad.c_str());
}

TEST(Data, MnistImagesAndLabels) {
  DataOptions o;
  o.name = "mnist";
  o.batch_size = 5;
  auto d = make_data(o);
  auto b = d->train_batch(0);
  EXPECT_EQ(b.inputs.sizes(), (std::vector<int64_t>{5, 1, 28, 28}));
  EXPECT_GE(b.targets.min().item<int64_t>(), 0);
  EXPECT_LE(b.targets.max().item<int64_t>(), 9);
  EXPECT_EQ(d->n_val_batches(), 2000);
}
