// HDF5 output. Oracle: values read back equal values written; the target path appears only on
// commit() and an abandoned writer leaves no file behind. A dataset whose element type has a size no
// writer produces is refused in one UserError before HDF5 sizes a conversion buffer from it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <H5Cpp.h>

#include "errors.h"
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

TEST(ReadH5Dataset, RefusesElementSizesNoWriterProduces) {
  const std::string path = testing::TempDir() + "/h5io_odd_type.h5";
  {
    H5::H5File f(path, H5F_ACC_TRUNC);
    H5::FloatType wide(H5::PredType::IEEE_F32LE);
    wide.setSize(16);  // an IEEE float32 layout padded to 16 bytes (fuzz_h5 found one of ~4 GB)
    const hsize_t n = 4;
    H5::DataSpace space(1, &n);
    f.createDataSet("odd", wide, space);
    const float four[4] = {1, 2, 3, 4};
    f.createDataSet("fine", H5::PredType::IEEE_F32LE, space).write(four, H5::PredType::NATIVE_FLOAT);
  }
  try {
    read_h5_dataset(path, "odd", "--data");
    FAIL() << "a 16-byte float was read";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("dataset /odd has 16-byte floats"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_h5_dataset(path, "fine", "--data").numel(), 4);
  std::remove(path.c_str());
}

// Inputs fuzz_h5 found, kept in its corpus: each is one UserError naming the file, read without
// allocating what the damaged header claims.
TEST(ReadH5Dataset, FuzzRegressionsAreOneLineErrors) {
  const std::string dir = BLOCKSHARP_FUZZ_H5_CORPUS;
  const struct {
    const char* file;
    const char* dataset;
    const char* says;
  } cases[] = {
      {"regress-extent-beyond-storage.h5", "h.0.mlp.fc_out.weight", "claims 3.0 GiB but stores 1 KiB"},
      {"regress-huge-element-type.h5", "params/h.0.attn.v_proj.bias", "-byte floats"},
  };
  for (const auto& c : cases) {
    try {
      read_h5_dataset(dir + "/" + c.file, c.dataset, "--resume checkpoint");
      ADD_FAILURE() << c.file << " was read";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.file), std::string::npos) << e.what();
    }
  }
  // The same reader with the shape the model expects refuses before looking at the storage.
  try {
    read_h5_dataset(dir + "/regress-extent-beyond-storage.h5", "h.0.mlp.fc_out.weight", "--params",
                    std::vector<int64_t>{8, 32});
    ADD_FAILURE() << "read with the wrong shape";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [8, 100663328], expected [8, 32]"), std::string::npos) << e.what();
  }
}
