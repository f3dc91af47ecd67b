// Built-in and .h5 data sources.
#include "data.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "errors.h"
#include "atomic_file.h"
#include "json_file.h"
#include "h5io.h"
#include "tokenizer.h"

namespace bs {

std::vector<std::string> builtin_data_names() { return {"brown", "pydocs", "mnist", "fashion-mnist"}; }

static uint64_t mix(uint64_t a, uint64_t b) {  // splitmix64 of a pair: independent streams per batch
  uint64_t z = a * 0x9E3779B97F4A7C15ULL + b + 0x632BE59BD9B4E019ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<int64_t> batch_rows(int64_t n_rows, int64_t batch_size, int64_t index, uint64_t seed, bool shuffle) {
  std::vector<int64_t> rows(batch_size);
  const int64_t first = index * batch_size;
  if (!shuffle) {
    for (int64_t r = 0; r < batch_size; ++r) rows[r] = (first + r) % n_rows;
    return rows;
  }
  int64_t cached_epoch = -1;
  std::vector<int64_t> perm;
  for (int64_t r = 0; r < batch_size; ++r) {
    const int64_t pos = first + r, epoch = pos / n_rows;
    if (epoch != cached_epoch) {
      perm.resize(n_rows);
      for (int64_t k = 0; k < n_rows; ++k) perm[k] = k;
      std::mt19937_64 rng(mix(seed, static_cast<uint64_t>(epoch)));
      std::shuffle(perm.begin(), perm.end(), rng);
      cached_epoch = epoch;
    }
    rows[r] = perm[pos % n_rows];
  }
  return rows;
}

Batch batch_to(const Batch& b, torch::Dtype dtype) {
  auto conv = [dtype](const torch::Tensor& t) { return t.is_floating_point() ? t.to(dtype) : t; };
  return {conv(b.inputs), conv(b.targets)};
}

namespace {

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UserError(param("data") + " " + what + ": '" + path + "' not found (run scripts/setup.sh)");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Token corpus: random windows from the first (1 - val_fraction) of the tokens; validation takes
// consecutive windows from the rest.
class TextCorpus : public DataSource {
 public:
  TextCorpus(const std::string& name, const DataOptions& opt) : m_opt(opt), m_name(name) {
    const std::string dir = data_cache_dir();
    const std::string text_path = dir + "/" + name + ".txt";
    std::vector<int32_t> tokens;
    if (opt.tokenizer == "byte") {
      tokens = ByteTokenizer().encode(read_file(text_path, name));
    } else {
      // BPE of a whole corpus takes seconds: cache the ids beside the text.
      const std::string cache = dir + "/" + name + "." + opt.tokenizer + ".bin";
      std::ifstream in(cache, std::ios::binary);
      if (in) {
        in.seekg(0, std::ios::end);
        tokens.resize(static_cast<size_t>(in.tellg()) / sizeof(int32_t));
        in.seekg(0);
        in.read(reinterpret_cast<char*>(tokens.data()), tokens.size() * sizeof(int32_t));
      } else {
        tokens = make_tokenizer(opt.tokenizer)->encode(read_file(text_path, name));
        try {  // a cache: best effort
          write_atomically(cache, [&](const std::string& tmp) {
            std::ofstream out(tmp, std::ios::binary);
            out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(int32_t));
            out.close();
            if (!out) throw UserError("cannot write '" + cache + "'");
          });
        } catch (const UserError&) {}
      }
    }
    m_vocab = tokenizer_vocab_size(opt.tokenizer);
    m_tokens = torch::from_blob(tokens.data(), {static_cast<int64_t>(tokens.size())}, torch::kInt32).to(torch::kLong);
    const int64_t n = m_tokens.size(0);
    m_n_train = static_cast<int64_t>(std::floor(n * (1.0 - opt.val_fraction)));
    if (m_n_train < opt.seq_len + 2 || n - m_n_train < opt.seq_len + 2)
      throw UserError(param("data") + " " + name + ": corpus too small for " + param("seq_len") + " " +
                      std::to_string(opt.seq_len));
  }

  Batch train_batch(int64_t index) const override {
    std::mt19937_64 rng(mix(m_opt.seed, static_cast<uint64_t>(index)));
    std::uniform_int_distribution<int64_t> start(0, m_n_train - m_opt.seq_len - 1);
    std::vector<int64_t> starts(m_opt.batch_size);
    for (auto& s : starts) s = start(rng);
    return windows(starts);
  }
  int64_t n_val_batches() const override {
    const int64_t n_val = m_tokens.size(0) - m_n_train - 1;
    return n_val / (m_opt.batch_size * m_opt.seq_len);
  }
  Batch val_batch(int64_t index) const override {
    std::vector<int64_t> starts(m_opt.batch_size);
    for (int64_t b = 0; b < m_opt.batch_size; ++b)
      starts[b] = m_n_train + (index * m_opt.batch_size + b) * m_opt.seq_len;
    return windows(starts);
  }
  std::string describe() const override {
    return m_name + " (" + m_opt.tokenizer + " tokens: " + std::to_string(m_tokens.size(0)) + ", vocab " +
           std::to_string(m_vocab) + ")";
  }
  double unigram_entropy() const override {
    auto counts = torch::bincount(m_tokens.narrow(0, 0, m_n_train), {}, m_vocab).to(torch::kDouble);
    auto p = counts / counts.sum();
    auto nz = p.masked_select(p > 0);
    return -(nz * nz.log()).sum().item<double>();
  }

 private:
  Batch windows(const std::vector<int64_t>& starts) const {
    std::vector<torch::Tensor> xs, ys;
    for (int64_t s : starts) {
      xs.push_back(m_tokens.narrow(0, s, m_opt.seq_len));
      ys.push_back(m_tokens.narrow(0, s + 1, m_opt.seq_len));
    }
    return {torch::stack(xs), torch::stack(ys)};
  }
  DataOptions m_opt;
  std::string m_name;
  torch::Tensor m_tokens;
  int64_t m_n_train = 0, m_vocab = 256;
};

torch::Tensor read_idx(const std::string& path) {
  std::string raw = read_file(path, "mnist");
  auto be32 = [&](size_t off) {
    const auto* b = reinterpret_cast<const unsigned char*>(raw.data() + off);
    return static_cast<int64_t>((uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3]);
  };
  if (raw.size() < 8) throw UserError(param("data") + ": '" + path + "' is not an IDX file");
  const int ndim = static_cast<unsigned char>(raw[3]);
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (int d = 0; d < ndim; ++d) {
    shape.push_back(be32(4 + 4 * d));
    numel *= shape.back();
  }
  const size_t header = 4 + 4 * ndim;
  if (raw.size() != header + static_cast<size_t>(numel))
    throw UserError(param("data") + ": '" + path + "' is truncated");
  return torch::from_blob(raw.data() + header, shape, torch::kUInt8).clone();
}

// MNIST-layout images: train split for training (seeded epoch permutations), t10k for validation.
class ImageData : public DataSource {
 public:
  ImageData(const std::string& name, const DataOptions& opt) : m_opt(opt), m_name(name) {
    const std::string dir = data_cache_dir() + "/" + name + "/";
    auto norm = [](const torch::Tensor& u8) {
      return ((u8.to(torch::kFloat32) / 255.0 - 0.1307) / 0.3081).unsqueeze(1);
    };
    m_train_x = norm(read_idx(dir + "train-images-idx3-ubyte"));
    m_train_y = read_idx(dir + "train-labels-idx1-ubyte").to(torch::kLong);
    m_val_x = norm(read_idx(dir + "t10k-images-idx3-ubyte"));
    m_val_y = read_idx(dir + "t10k-labels-idx1-ubyte").to(torch::kLong);
  }
  Batch train_batch(int64_t index) const override {
    auto rows = torch::tensor(batch_rows(m_train_x.size(0), m_opt.batch_size, index, m_opt.seed, true));
    return {m_train_x.index_select(0, rows), m_train_y.index_select(0, rows)};
  }
  int64_t n_val_batches() const override { return m_val_x.size(0) / m_opt.batch_size; }
  Batch val_batch(int64_t index) const override {
    return {m_val_x.narrow(0, index * m_opt.batch_size, m_opt.batch_size),
            m_val_y.narrow(0, index * m_opt.batch_size, m_opt.batch_size)};
  }
  std::string describe() const override {
    return m_name + " (" + std::to_string(m_train_x.size(0)) + " train / " + std::to_string(m_val_x.size(0)) +
           " validation images)";
  }

 private:
  DataOptions m_opt;
  std::string m_name;
  torch::Tensor m_train_x, m_train_y, m_val_x, m_val_y;
};

// User data: /inputs and /targets (rows are examples), optional /val_inputs and /val_targets.
class H5Data : public DataSource {
 public:
  explicit H5Data(const DataOptions& opt) : m_opt(opt) {
    m_x = read_h5_dataset(opt.name, "inputs", param("data"));
    m_y = read_h5_dataset(opt.name, "targets", param("data"));
    if (m_x.dim() == 0 || m_y.dim() == 0 || m_x.size(0) != m_y.size(0))
      throw UserError(param("data") + " '" + opt.name + "': /inputs and /targets must have the same number of rows");
    if (m_x.size(0) == 0) throw UserError(param("data") + " '" + opt.name + "': /inputs has no rows");
    if (!opt.val_data.empty()) {
      require_h5_file(opt.val_data, param("val_data"));
      m_vx = read_h5_dataset(opt.val_data, "inputs", param("val_data"));
      m_vy = read_h5_dataset(opt.val_data, "targets", param("val_data"));
      check_val(param("val_data") + " '" + opt.val_data + "': /inputs and /targets");
    } else if (h5_has_dataset(opt.name, "val_inputs")) {
      m_vx = read_h5_dataset(opt.name, "val_inputs", param("data"));
      m_vy = read_h5_dataset(opt.name, "val_targets", param("data"));
      check_val(param("data") + " '" + opt.name + "': /val_inputs and /val_targets");
    }
  }
  Batch train_batch(int64_t index) const override {
    auto rows = torch::tensor(batch_rows(m_x.size(0), m_opt.batch_size, index, m_opt.seed, m_opt.shuffle));
    return {m_x.index_select(0, rows), m_y.index_select(0, rows)};
  }
  int64_t n_val_batches() const override { return m_vx.defined() ? m_vx.size(0) / m_opt.batch_size : 0; }
  Batch val_batch(int64_t index) const override {
    return {m_vx.narrow(0, index * m_opt.batch_size, m_opt.batch_size),
            m_vy.narrow(0, index * m_opt.batch_size, m_opt.batch_size)};
  }
  std::string describe() const override {
    std::ostringstream s;
    s << m_opt.name << " (" << m_x.size(0) << " rows, inputs " << m_x.sizes() << ")";
    if (!m_opt.val_data.empty()) s << ", validation " << m_opt.val_data << " (" << m_vx.size(0) << " rows)";
    return s.str();
  }
  double unigram_entropy() const override { return std::numeric_limits<double>::quiet_NaN(); }
  // Validation rows shaped like the training rows, equal in number for inputs and targets, and at
  // least one batch of them (else no validation loss could be computed).
  void check_val(const Message& what) const {
    if (m_vx.dim() == 0 || m_vy.dim() == 0 || m_vx.size(0) != m_vy.size(0))
      throw UserError(what + " must have the same number of rows");
    if (m_vx.sizes().slice(1) != m_x.sizes().slice(1) || m_vy.sizes().slice(1) != m_y.sizes().slice(1) ||
        m_vx.is_floating_point() != m_x.is_floating_point() || m_vy.is_floating_point() != m_y.is_floating_point()) {
      std::ostringstream s;
      s << " have rows of shape " << m_vx.sizes().slice(1) << " and " << m_vy.sizes().slice(1)
        << " where the training data's are " << m_x.sizes().slice(1) << " and " << m_y.sizes().slice(1)
        << " (or their types differ: integer vs floating)";
      throw UserError(what + s.str());
    }
    if (m_vx.size(0) < m_opt.batch_size)
      throw UserError(what + " have " + std::to_string(m_vx.size(0)) + " rows, fewer than one " + param("batch_size") +
                      " (" + std::to_string(m_opt.batch_size) + ")");
  }
  std::pair<int64_t, int64_t> input_id_range() const override {
    if (m_x.is_floating_point()) return {0, -1};
    int64_t lo = m_x.min().item<int64_t>(), hi = m_x.max().item<int64_t>();
    if (m_vx.defined() && !m_vx.is_floating_point() && m_vx.numel() > 0) {
      lo = std::min(lo, m_vx.min().item<int64_t>());
      hi = std::max(hi, m_vx.max().item<int64_t>());
    }
    return {lo, hi};
  }

 private:
  DataOptions m_opt;
  torch::Tensor m_x, m_y, m_vx, m_vy;
};

}  // namespace

std::unique_ptr<DataSource> make_data(const DataOptions& opt) {
  if (opt.batch_size <= 0) throw UserError(param("batch_size") + " must be positive");
  const bool builtin =
      opt.name == "brown" || opt.name == "pydocs" || opt.name == "mnist" || opt.name == "fashion-mnist";
  if (builtin && !opt.val_data.empty())
    throw UserError(param("val_data") + " applies to .h5 " + param("data") + "; built-in data set '" + opt.name +
                    "' has its own validation split");
  if (opt.name == "brown" || opt.name == "pydocs") return std::make_unique<TextCorpus>(opt.name, opt);
  if (opt.name == "mnist" || opt.name == "fashion-mnist") return std::make_unique<ImageData>(opt.name, opt);
  if (opt.name.size() > 3 &&
      (opt.name.compare(opt.name.size() - 3, 3, ".h5") == 0 || opt.name.find('/') != std::string::npos))
    return std::make_unique<H5Data>(opt);
  throw UserError(param("data") + " '" + opt.name +
                  "': unknown data set (built-in: brown, pydocs, mnist, fashion-mnist; or a .h5 file)");
}

}  // namespace bs
