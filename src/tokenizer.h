// Tokenizers for the built-in text corpora: raw bytes (vocab 256) and GPT-2's byte-level BPE
// (Radford et al. 2019) read from encoder.json / vocab.bpe, with GPT-2's pre-tokenization regex
// implemented over Unicode categories (ICU).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace bs {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& utf8) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
};

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& utf8) const override;
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "byte"; }
};

class Gpt2Tokenizer : public Tokenizer {
 public:
  Gpt2Tokenizer(const std::string& encoder_json, const std::string& vocab_bpe);
  std::vector<int32_t> encode(const std::string& utf8) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(m_encoder.size()); }
  std::string name() const override { return "gpt2"; }
  // GPT-2's pre-tokenization: the pieces its regex splits the text into (exposed for tests).
  static std::vector<std::string> pretokenize(const std::string& utf8);

 private:
  void bpe(const std::string& piece, std::vector<int32_t>& out) const;
  std::unordered_map<std::string, int32_t> m_encoder;
  std::unordered_map<std::string, int32_t> m_merge_rank;  // "left right" -> rank
  std::vector<std::string> m_byte_to_unicode;             // 256 UTF-8 strings
  mutable std::unordered_map<std::string, std::vector<int32_t>> m_cache;
};

// "byte" or "gpt2" (files from the data cache, see data.h).
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name);
int64_t tokenizer_vocab_size(const std::string& name);  // without loading files

}  // namespace bs
