// HDF5 output. Oracle: values read back equal values written; the target path appears only on
// commit() and an abandoned writer leaves no file behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include "h5io.h"

using namespace bs;

TEST(H5Output, WritesAtomicallyAndReadsBack) {
  const std::string path = testing::TempDir() + "/h5io_test.h5";
  std::remove(path.c_str());
  {
    H5Output out(path);
    out.write("/global/eigenvalues", std::vector<double>{3.5, 1.25});
    out.write("/global/n_hvp", int64_t{42});
    out.write("/blocks/name", std::vector<std::string>{"a", "b.weight"});
    out.write("w", torch::arange(6, torch::kFloat32).reshape({2, 3}));
    out.attribute("tool", "blocksharp");
    EXPECT_NE(access(path.c_str(), F_OK), 0) << "visible before commit";
    out.commit();
  }
  auto ev = read_h5_dataset(path, "global/eigenvalues", "test");
  EXPECT_EQ(ev[0].item<double>(), 3.5);
  EXPECT_EQ(ev[1].item<double>(), 1.25);
  EXPECT_EQ(read_h5_dataset(path, "global/n_hvp", "test").item<int64_t>(), 42);
  auto w = read_h5_dataset(path, "w", "test");
  EXPECT_TRUE(torch::equal(w, torch::arange(6, torch::kFloat64).reshape({2, 3})));
  std::remove(path.c_str());
  {
    H5Output abandoned(path);
    abandoned.write("x", 1.0);
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0) << "abandoned output must leave nothing";
}
