// Data sources: built-in corpora (brown, pydocs; byte or GPT-2 tokens), images (mnist, fashion-mnist)
// and user .h5 files (/inputs, /targets). Every batch is a pure function of (seed, batch index), so a
// resumed run sees exactly the batches an uninterrupted one would.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cache_dir.h"

namespace bs {

struct Batch {
  torch::Tensor inputs, targets;
};

struct DataOptions {
  std::string name = "brown";  // built-in name or path to .h5
  std::string tokenizer = "byte";
  int64_t batch_size = 8;
  int64_t seq_len = 64;  // token windows (text corpora only)
  uint64_t seed = 0;
  bool shuffle = false;  // .h5 only; built-ins always sample by seed
  std::string val_data;  // .h5 only: validation rows from this file's /inputs and /targets
  double val_fraction = 0.05;
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual Batch train_batch(int64_t index) const = 0;
  virtual int64_t n_val_batches() const = 0;
  virtual Batch val_batch(int64_t index) const = 0;
  virtual std::string describe() const = 0;
  // Unigram entropy (nats) of the training tokens; NaN for non-token data. Baseline for LM losses.
  virtual double unigram_entropy() const { return std::numeric_limits<double>::quiet_NaN(); }
  // The smallest and largest integer input (token ids), for a check against the model's vocabulary
  // before any forward; {0, -1} when the inputs are not integers or not known.
  virtual std::pair<int64_t, int64_t> input_id_range() const { return {0, -1}; }
};

std::vector<std::string> builtin_data_names();
std::unique_ptr<DataSource> make_data(const DataOptions& opt);

// Indices of batch `index` over `n_rows` rows: in order and wrapping, or from a per-epoch permutation
// seeded by (seed, epoch) when `shuffle`.
std::vector<int64_t> batch_rows(int64_t n_rows, int64_t batch_size, int64_t index, uint64_t seed, bool shuffle);

// Float data converted to `dtype`; integer data (tokens, labels) left as int64.
Batch batch_to(const Batch& b, torch::Dtype dtype);

}  // namespace bs
