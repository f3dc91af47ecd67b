// safetensors (Hugging Face's tensor file format), read and written to its specification: an 8-byte
// little-endian header length N, N bytes of UTF-8 JSON ({name: {dtype, shape, data_offsets}} and an
// optional "__metadata__" of strings), then the byte buffer the offsets index. Debian ships no C++
// library for it, so this one is small and strict: every header field, size and offset is checked
// before a byte of data is touched, and the file is memory-mapped, never read whole.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace bs {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte range in the data buffer
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; errors are UserErrors naming `what` (e.g. param("model") + " 'hf:DIR'") and the file.
  SafetensorsFile(const std::string& path, const Message& what);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::vector<SafetensorsEntry>& entries() const { return m_entries; }  // in offset order
  const std::map<std::string, std::string>& metadata() const { return m_metadata; }
  bool has(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // UserError when absent
  // A copy of the tensor in its own dtype (float16 / bfloat16 included), on the CPU.
  torch::Tensor tensor(const std::string& name) const;

 private:
  std::string m_path;
  Message m_what;
  const unsigned char* m_map = nullptr;
  size_t m_size = 0, m_data = 0;  // file size, offset of the data buffer
  std::vector<SafetensorsEntry> m_entries;
  std::map<std::string, size_t> m_index;
  std::map<std::string, std::string> m_metadata;
};

// Parses a header (the JSON text) against a data buffer of `buffer_bytes`; the checks of the reader,
// exposed for tests and the fuzzer. Throws UserError naming `where`.
std::vector<SafetensorsEntry> parse_safetensors_header(const std::string& json_text, size_t buffer_bytes,
                                                       const Message& where,
                                                       std::map<std::string, std::string>* metadata = nullptr);

// Writes tensors (float64/32/16, bfloat16, int64/32/16/8, uint8, bool) in the given order, under a
// temporary name renamed into place; UserError naming the file on any failure.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace bs
