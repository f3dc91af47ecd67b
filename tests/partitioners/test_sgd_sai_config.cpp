// SGD-SaI config. Oracle: the values written are read back unchanged, and invalid entries are errors
// naming the parameter and key.
#include <gtest/gtest.h>

#include "errors.h"
#include "sgd_sai_config.h"

using namespace bs;

TEST(SgdSaiConfig, RoundTripAndValidation) {
  ParamTable t({{"a.weight", torch::zeros({3, 2})}, {"a.bias", torch::zeros({1})}});
  json j = sgd_sai_config(t, ModelInfo{}, {12.5, 1e8}, 1, 4, 1e-8);
  EXPECT_EQ(j["format"], "blocksharp.sgd_sai/1");
  auto g = sgd_sai_from_json(j, t, "s.json");
  EXPECT_EQ(g[0], 12.5);
  EXPECT_EQ(g[1], 1e8);
  j["params"][1]["gsnr"] = -1;
  try {
    sgd_sai_from_json(j, t, "s.json");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("a.bias"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("gsnr"), std::string::npos);
  }
}
