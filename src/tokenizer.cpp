// GPT-2 byte-level BPE. Pre-tokenization follows the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// alternative by alternative, on code points; merges apply lowest rank first.
#include "tokenizer.h"

#include <unicode/uchar.h>

#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cache_dir.h"
#include "errors.h"

namespace bs {

std::vector<int32_t> ByteTokenizer::encode(const std::string& utf8) const {
  std::vector<int32_t> out(utf8.size());
  for (size_t i = 0; i < utf8.size(); ++i) out[i] = static_cast<unsigned char>(utf8[i]);
  return out;
}

namespace {

struct CodePoint {
  UChar32 cp;
  size_t begin, end;  // byte range in the UTF-8 string
};

std::vector<CodePoint> decode_utf8(const std::string& s) {
  std::vector<CodePoint> out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (i + len > s.size()) len = 1;
    UChar32 cp = len == 1 ? c : (c & (0xFF >> (len + 1)));
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back({cp, i, i + len});
    i += len;
  }
  return out;
}

bool is_letter(UChar32 c) { return (U_GET_GC_MASK(c) & U_GC_L_MASK) != 0; }
bool is_number(UChar32 c) { return (U_GET_GC_MASK(c) & U_GC_N_MASK) != 0; }
bool is_space(UChar32 c) { return u_isUWhiteSpace(c) != 0; }

std::string encode_utf8(UChar32 cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

}  // namespace

std::vector<std::string> Gpt2Tokenizer::pretokenize(const std::string& text) {
  const auto cps = decode_utf8(text);
  const size_t n = cps.size();
  std::vector<std::string> pieces;
  auto emit = [&](size_t a, size_t b) { pieces.push_back(text.substr(cps[a].begin, cps[b - 1].end - cps[a].begin)); };
  size_t i = 0;
  while (i < n) {
    // 's|'t|'re|'ve|'m|'ll|'d
    if (cps[i].cp == '\'' && i + 1 < n) {
      UChar32 a = cps[i + 1].cp, b = i + 2 < n ? cps[i + 2].cp : 0;
      size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        len = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        len = 3;
      if (len) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    const size_t j = (cps[i].cp == ' ' && i + 1 < n) ? i + 1 : i;  // optional leading space
    auto run = [&](size_t from, auto pred) {
      size_t k = from;
      while (k < n && pred(cps[k].cp)) ++k;
      return k;
    };
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' (a space itself satisfies none of the classes,
    // so with a leading space only the spaced form can match)
    bool matched = false;
    for (int alt = 0; alt < 3 && !matched; ++alt) {
      auto pred = [alt](UChar32 c) {
        return alt == 0 ? is_letter(c) : alt == 1 ? is_number(c) : !(is_space(c) || is_letter(c) || is_number(c));
      };
      if (pred(cps[j].cp)) {
        const size_t end = run(j, pred);
        emit(i, end);
        i = end;
        matched = true;
      }
    }
    if (matched) continue;
    // \s+(?!\S) then \s+
    size_t end = run(i, is_space);
    if (end > i) {
      if (end < n && end - i > 1) end -= 1;  // leave the last space to prefix the next word
      emit(i, end);
      i = end;
      continue;
    }
    emit(i, i + 1);  // unreachable for valid input; guards against a stall
    ++i;
  }
  return pieces;
}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& encoder_json, const std::string& vocab_bpe) {
  std::ifstream ej(encoder_json);
  if (!ej) throw UserError("tokenizer file '" + encoder_json + "' not found (run scripts/setup.sh)");
  nlohmann::json j;
  try {
    ej >> j;
  } catch (const std::exception& e) {
    throw UserError("tokenizer file '" + encoder_json + "': invalid JSON");
  }
  if (!j.is_object()) throw UserError("tokenizer file '" + encoder_json + "': not a JSON object of token ids");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer())
      throw UserError("tokenizer file '" + encoder_json + "': the id of token '" + it.key() + "' is not an integer");
    m_encoder[it.key()] = it.value().get<int32_t>();
  }
  std::ifstream vb(vocab_bpe);
  if (!vb) throw UserError("tokenizer file '" + vocab_bpe + "' not found (run scripts/setup.sh)");
  std::string line;
  int32_t rank = 0;
  while (std::getline(vb, line)) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    m_merge_rank[line] = rank++;
  }
  // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+n.
  m_byte_to_unicode.resize(256);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    m_byte_to_unicode[b] = encode_utf8(printable ? b : 256 + n++);
  }
}

void Gpt2Tokenizer::bpe(const std::string& piece, std::vector<int32_t>& out) const {
  if (auto c = m_cache.find(piece); c != m_cache.end()) {
    out.insert(out.end(), c->second.begin(), c->second.end());
    return;
  }
  std::vector<std::string> word;
  for (unsigned char b : piece) word.push_back(m_byte_to_unicode[b]);
  while (word.size() > 1) {
    int32_t best = INT32_MAX;
    size_t at = 0;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      auto r = m_merge_rank.find(word[k] + " " + word[k + 1]);
      if (r != m_merge_rank.end() && r->second < best) {
        best = r->second;
        at = k;
      }
    }
    if (best == INT32_MAX) break;
    const std::string left = word[at], right = word[at + 1];
    std::vector<std::string> merged;
    for (size_t k = 0; k < word.size(); ++k) {
      if (k + 1 < word.size() && word[k] == left && word[k + 1] == right) {
        merged.push_back(left + right);
        ++k;
      } else {
        merged.push_back(word[k]);
      }
    }
    word.swap(merged);
  }
  std::vector<int32_t> ids;
  for (const auto& w : word) {
    auto e = m_encoder.find(w);
    if (e == m_encoder.end()) throw UserError("gpt2 tokenizer: symbol missing from encoder.json");
    ids.push_back(e->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (m_cache.size() < 200000) m_cache.emplace(piece, std::move(ids));
}

std::vector<int32_t> Gpt2Tokenizer::encode(const std::string& utf8) const {
  std::vector<int32_t> out;
  for (const auto& piece : pretokenize(utf8)) bpe(piece, out);
  return out;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  if (name == "byte") return std::make_unique<ByteTokenizer>();
  if (name == "gpt2")
    return std::make_unique<Gpt2Tokenizer>(data_cache_dir() + "/gpt2/encoder.json",
                                           data_cache_dir() + "/gpt2/vocab.bpe");
  throw UserError(param("tokenizer") + " '" + name + "': unknown tokenizer (byte or gpt2)");
}

int64_t tokenizer_vocab_size(const std::string& name) {
  if (name == "byte") return 256;
  if (name == "gpt2") return 50257;
  throw UserError(param("tokenizer") + " '" + name + "': unknown tokenizer (byte or gpt2)");
}

}  // namespace bs
