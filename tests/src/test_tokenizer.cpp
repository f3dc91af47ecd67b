// GPT-2 byte-level BPE. Oracle: every r50k_base (GPT-2) reference encoding in gpt-tokenizer's
// TestPlans.txt, plus hand-checked pieces of GPT-2's pre-tokenization regex.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "data.h"
#include "tokenizer.h"

using namespace bs;

TEST(Tokenizer, PretokenizeFollowsGpt2Regex) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Gpt2Tokenizer::pretokenize("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(Gpt2Tokenizer::pretokenize("it's 42!!"), (V{"it", "'s", " 42", "!!"}));
  EXPECT_EQ(Gpt2Tokenizer::pretokenize("a   b"), (V{"a", "  ", " b"}));
  EXPECT_EQ(Gpt2Tokenizer::pretokenize("x \n"), (V{"x", " \n"}));
  EXPECT_EQ(Gpt2Tokenizer::pretokenize("we'll"), (V{"we", "'ll"}));
}

TEST(Tokenizer, ByteTokensAreBytes) {
  auto ids = ByteTokenizer().encode("A\xc3\xa9");
  EXPECT_EQ(ids, (std::vector<int32_t>{65, 0xC3, 0xA9}));
}

TEST(Tokenizer, Gpt2MatchesEveryReferenceEncoding) {
  std::ifstream f(data_cache_dir() + "/gpt2/TestPlans.txt");
  ASSERT_TRUE(f.good()) << "run scripts/setup.sh first";
  auto tok = make_tokenizer("gpt2");
  EXPECT_EQ(tok->vocab_size(), 50257);
  std::string line, encoding, sample;
  int checked = 0;
  while (std::getline(f, line)) {
    if (line.rfind("EncodingName: ", 0) == 0)
      encoding = line.substr(14);
    else if (line.rfind("Sample: ", 0) == 0)
      sample = line.substr(8);
    else if (line.rfind("Encoded: ", 0) == 0 && encoding == "r50k_base") {
      std::vector<int32_t> expected;
      std::string list = line.substr(9);
      for (char& c : list)
        if (c == '[' || c == ']' || c == ',') c = ' ';
      std::istringstream ss(list);
      int32_t id;
      while (ss >> id) expected.push_back(id);
      EXPECT_EQ(tok->encode(sample), expected) << "sample: " << sample;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 64);
}
