// trace.h5's appends. Oracles: the records written (read back bit for bit), the doubling rule's count
// of whole-file rewrites, and the kernel's count of bytes this process wrote (/proc/self/io wchar),
// equal for every in-place append however long the run.
#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "h5io.h"
#include "tracer.h"

using namespace bs;

namespace {

TraceRecord record(int64_t i) {
  TraceRecord r;
  r.step = 4 * (i + 1);
  r.loss = 3.0 / (1.0 + 0.01 * i);
  r.probe_loss = r.loss + 1e-3 * std::sin(static_cast<double>(i));
  r.lr = 1e-3 * (1 + i % 7);
  r.grad_norm = 0.5 + 1.0 / (1 + i);
  r.lambda_max = 10 + std::cos(0.1 * i);
  r.directional = i % 3 ? NAN : -0.25 * i;
  r.lanczos_products = 20 + i % 5;
  r.noise_scale = 1.5 * i;
  r.threshold = 2 / r.lr;
  r.preconditioned_lambda_max = 0.1 * i;
  r.preconditioned_threshold = 38 / r.lr;
  r.preconditioned_products = 30 + i % 4;
  r.kind_sharpness = {{"FFN", 0.5 + i}, {"QK", 1.0 / (2 + i)}};
  r.block_lambda_max = {1.0 * i, 2.0 * i + 0.5, -1.0 * i};
  return r;
}

int64_t bytes_written() {  // the write()/pwrite() bytes of this process so far
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value)
    if (key == "wchar:") return value;
  return -1;
}

void expect_file_holds(const std::string& path, int64_t n) {
  auto col = [&](const char* name) { return read_h5_dataset(path, name, "test"); };
  const auto step = col("step"), loss = col("loss"), lr = col("lr"), dir = col("sharpness/directional"),
             prod = col("sharpness/preconditioned_products"), ffn = col("sharpness/kind/FFN"),
             blocks = col("sharpness/block_lambda_max");
  ASSERT_EQ(step.numel(), n);
  ASSERT_EQ(loss.numel(), n);
  ASSERT_EQ(blocks.size(0), n);
  for (int64_t i = 0; i < n; ++i) {
    const auto r = record(i);
    EXPECT_EQ(step[i].item<int64_t>(), r.step);
    EXPECT_EQ(loss[i].item<double>(), r.loss);  // bit for bit
    EXPECT_EQ(lr[i].item<double>(), r.lr);
    EXPECT_EQ(std::isnan(dir[i].item<double>()), std::isnan(r.directional));
    if (!std::isnan(r.directional)) {
      EXPECT_EQ(dir[i].item<double>(), r.directional);
    }
    EXPECT_EQ(prod[i].item<int64_t>(), r.preconditioned_products);
    EXPECT_EQ(ffn[i].item<double>(), r.kind_sharpness.at("FFN"));
    for (int b = 0; b < 3; ++b) EXPECT_EQ(blocks[i][b].item<double>(), r.block_lambda_max[b]);
  }
}

}  // namespace

TEST(TraceFile, AppendsInPlaceAtAConstantCostAndRewritesLogarithmically) {
  const std::string path = ::testing::TempDir() + "/trace_append.h5";
  std::remove(path.c_str());
  TraceFile file(path, -1, {"a", "b", "c"}, Curvature::Hessian, true);
  const int64_t n = 600;
  std::vector<int64_t> in_place_bytes;  // (record index, bytes) of the appends that did not rewrite
  std::vector<int64_t> in_place_at;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t rewrites = file.rewrites(), before = bytes_written();
    file.append(record(i));
    if (file.rewrites() == rewrites) {
      in_place_bytes.push_back(bytes_written() - before);
      in_place_at.push_back(i);
    }
  }
  expect_file_holds(path, n);
  // Doubling: the constructor, the first record, then at 65 and 257 records (chunks of 64, 256, 1024).
  EXPECT_EQ(file.rewrites(), 4);
  ASSERT_EQ(static_cast<int64_t>(in_place_bytes.size()), n - 3);
  ASSERT_GT(in_place_bytes.front(), 0);
  // The same bytes for the 2nd record as for the 600th: a row per dataset and its header, whatever n.
  // In the sanitizer build (scripts/sanitize.sh), UBSan's vptr check tests that a pointer is readable
  // by writing 16 bytes to a pipe (sanitizer_common's IsAccessibleMemoryRange) the first time it meets a
  // type, and /proc/self/io counts those writes too: there the first in-place append may count a few
  // more (16 bytes, measured 2026-12-03) and the constant cost is checked from the second on.
#ifdef __SANITIZE_ADDRESS__
  const size_t first = 1;
  EXPECT_GE(in_place_bytes.front(), in_place_bytes[first]);
  EXPECT_LE(in_place_bytes.front() - in_place_bytes[first], 16 * 16);
  EXPECT_EQ((in_place_bytes.front() - in_place_bytes[first]) % 16, 0);
#else
  const size_t first = 0;
#endif
  for (size_t k = first; k < in_place_bytes.size(); ++k)
    EXPECT_EQ(in_place_bytes[k], in_place_bytes[first]) << "append of record " << in_place_at[k];
  EXPECT_LT(in_place_bytes.front(), 64 * 1024);
  std::printf("in-place append: %lld bytes written, at record 2 as at record %lld\n",
              static_cast<long long>(in_place_bytes.front()), static_cast<long long>(n));
}

TEST(TraceFile, ResumeCountsRecordsByStepAfterAnAppendKilledPartWay) {
  const std::string path = ::testing::TempDir() + "/trace_killed.h5";
  std::remove(path.c_str());
  {
    TraceFile file(path, -1, {"a", "b", "c"}, Curvature::Hessian, true);
    for (int64_t i = 0; i < 10; ++i) file.append(record(i));
  }
  {  // What a kill between two datasets' rows leaves: loss and block_lambda_max one row longer than /step.
    H5::H5File f(path, H5F_ACC_RDWR);
    for (const char* name : {"loss", "sharpness/block_lambda_max"}) {
      auto ds = f.openDataSet(name);
      hsize_t dims[2] = {0, 0};
      ds.getSpace().getSimpleExtentDims(dims);
      dims[0] += 1;
      ds.extend(dims);
    }
  }
  EXPECT_EQ(read_h5_dataset(path, "loss", "test").numel(), 11);
  TraceFile resumed(path, 1000, {"a", "b", "c"}, Curvature::Hessian, true);
  EXPECT_EQ(resumed.size(), 10u);
  expect_file_holds(path, 10);
  resumed.append(record(10));
  expect_file_holds(path, 11);
  // Resuming from a checkpoint at step 20 keeps records up to it (steps 4..20) and rewrites the file.
  TraceFile earlier(path, 20, {"a", "b", "c"}, Curvature::Hessian, true);
  EXPECT_EQ(earlier.size(), 5u);
  expect_file_holds(path, 5);
}

TEST(TraceFile, AReaderHoldingTheFileGetsTheOldFileAndTheAppendRewrites) {
  const std::string path = ::testing::TempDir() + "/trace_reader.h5";
  std::remove(path.c_str());
  TraceFile file(path, -1, {"a", "b", "c"}, Curvature::Hessian, true);
  for (int64_t i = 0; i < 5; ++i) file.append(record(i));
  H5::H5File reader(path, H5F_ACC_RDONLY);  // HDF5 refuses a writer while it is open
  const int64_t rewrites = file.rewrites();
  file.append(record(5));
  EXPECT_EQ(file.rewrites(), rewrites + 1);
  hsize_t dims[1] = {0};
  reader.openDataSet("step").getSpace().getSimpleExtentDims(dims);
  EXPECT_EQ(dims[0], 5u);  // the reader's file is the old one, whole
  reader.close();
  expect_file_holds(path, 6);
  file.append(record(6));  // the reader gone, in place again
  EXPECT_EQ(file.rewrites(), rewrites + 1);
  expect_file_holds(path, 7);
}
