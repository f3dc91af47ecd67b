// HDF5 helpers: reading user data, and H5Output, which writes a whole file under a temporary name and
// renames it into place on commit(), so a reader never sees a half-written profile or parameter file.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"

namespace H5 {
class H5File;
}

namespace bs {
class OutputSet;

// Dataset `name` of `path` as a tensor: floating data as float64, integer data as int64. Errors name
// `option` (e.g. "--data") and the file.
// With `expect`, a dataset of another shape is refused before anything is read or allocated (the
// reader of parameters and checkpoints knows the shape). Any contiguous dataset whose stored bytes fall
// short of its claimed extent is refused too: a damaged header, not data.
torch::Tensor read_h5_dataset(const std::string& path, const std::string& name, const Message& option,
                              const std::optional<std::vector<int64_t>>& expect = std::nullopt);
bool h5_has_dataset(const std::string& path, const std::string& name);
// UserError naming `option` unless `path` is a readable HDF5 file (missing, empty, garbage, truncated).
void require_h5_file(const std::string& path, const Message& option);

// Runs `body`, an HDF5 write, with HDF5's C++ destructors (which report close failures on std::cerr,
// one line per dataset) kept quiet: the failure's detail, or nullopt when it succeeded.
std::optional<std::string> h5_attempt(const std::function<void()>& body);

// Runs `body`, which writes HDF5 file `tmp` on its way to `path`, so that any HDF5 failure (a full
// disk, an I/O error) becomes one UserError naming `path`, with `tmp` removed, and HDF5's C++
// destructors (which report close failures on std::cerr, one line per dataset) stay quiet.
void h5_write_or_fail(const std::string& path, const std::string& tmp, const std::function<void()>& body);

class H5Output {
 public:
  explicit H5Output(std::string path);
  ~H5Output();  // removes the temporary file unless committed
  H5Output(const H5Output&) = delete;
  H5Output& operator=(const H5Output&) = delete;

  // Paths may contain groups ("/global/trace"); intermediate groups are created.
  void write(const std::string& path, const torch::Tensor& t);  // float32/float64/int64 kept as is
  void write(const std::string& path, const std::vector<double>& v);
  void write(const std::string& path, const std::vector<int64_t>& v);
  void write(const std::string& path, const std::vector<std::string>& v);
  void write(const std::string& path, double v);
  void write(const std::string& path, int64_t v);
  // One column of a table: get(row) for every row (a double, an int64_t or a std::string).
  template <class Row, class Get>
  void column(const std::string& path, const std::vector<Row>& rows, Get get) {
    std::vector<std::decay_t<decltype(get(rows.front()))>> values;
    values.reserve(rows.size());
    for (const auto& r : rows) values.push_back(get(r));
    write(path, values);
  }
  void attribute(const std::string& name, const std::string& value);  // on the root group
  void provenance();                                                  // provenance.h's attributes
  // Close and atomically rename into place (on rank 0 only when distributed); with a set, write its
  // id as attribute `set_id` and leave the rename to OutputSet::commit.
  void commit(OutputSet* set = nullptr);

 private:
  void guarded(const std::function<void()>& body);  // h5_write_or_fail, then forget the file on failure
  std::string m_path, m_tmp;
  std::unique_ptr<H5::H5File> m_file;
  bool m_committed = false;
  bool m_discard = false;  // a rank other than 0: writes nothing
};

}  // namespace bs
