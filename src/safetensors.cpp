// safetensors reader (mmap, strict header checks) and writer (temp file + rename).
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "errors.h"
#include "atomic_file.h"
#include "json_file.h"

namespace bs {

namespace {

using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeader = 100'000'000;

struct DtypeInfo {
  const char* name;
  size_t bytes;
  torch::Dtype torch;
};

const std::vector<DtypeInfo>& dtypes() {
  static const std::vector<DtypeInfo> d = {{"F64", 8, torch::kFloat64}, {"F32", 4, torch::kFloat32},
                                           {"F16", 2, torch::kFloat16}, {"BF16", 2, torch::kBFloat16},
                                           {"I64", 8, torch::kInt64},   {"I32", 4, torch::kInt32},
                                           {"I16", 2, torch::kInt16},   {"I8", 1, torch::kInt8},
                                           {"U8", 1, torch::kUInt8},    {"BOOL", 1, torch::kBool}};
  return d;
}

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : dtypes())
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo& dtype_of(torch::Dtype t, const Message& where) {
  for (const auto& d : dtypes())
    if (d.torch == t) return d;
  throw UserError(where + ": dtype " + std::string(c10::toString(t)) + " has no safetensors encoding");
}

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::vector<SafetensorsEntry> parse_safetensors_header(const std::string& text, size_t buffer_bytes,
                                                       const Message& where,
                                                       std::map<std::string, std::string>* metadata) {
  if (text.empty() || text[0] != '{') throw UserError(where + ": header is not a JSON object");
  json j;
  try {
    // Duplicate keys are an error in the format; nlohmann keeps the last silently, so count them.
    size_t keys = 0;
    j = json::parse(text, [&](int depth, json::parse_event_t ev, json&) {
      if (depth == 1 && ev == json::parse_event_t::key) ++keys;
      return true;
    });
    if (!j.is_object()) throw UserError(where + ": header is not a JSON object");
    if (keys != j.size()) throw UserError(where + ": header has a duplicate tensor name");
  } catch (const json::exception& e) {
    throw UserError(where + ": header is not valid JSON (" + std::string(e.what()).substr(0, 80) + ")");
  }
  std::vector<SafetensorsEntry> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw UserError(where + ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw UserError(where + ": __metadata__ value of '" + m.key() + "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const Message at = where + ": tensor '" + name + "'";
    if (name.empty()) throw UserError(where + ": a tensor has an empty name");
    if (!v.is_object()) throw UserError(at + " is not an object");
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        throw UserError(at + ": unknown key \"" + k.key() + "\"");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw UserError(at + ": missing or non-string \"dtype\"");
    const DtypeInfo* dt = find_dtype(v["dtype"].get<std::string>());
    if (!dt) throw UserError(at + ": unsupported dtype '" + v["dtype"].get<std::string>() + "'");
    if (!v.contains("shape") || !v["shape"].is_array()) throw UserError(at + ": missing or non-array \"shape\"");
    SafetensorsEntry e;
    e.name = name;
    e.dtype = dt->name;
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw UserError(at + ": shape entries must be non-negative integers");
      const uint64_t n = d.get<uint64_t>();
      if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (n != 0 && numel > std::numeric_limits<uint64_t>::max() / n))
        throw UserError(at + ": shape overflows");
      numel *= n;
      e.shape.push_back(static_cast<int64_t>(n));
    }
    const json& off = v.contains("data_offsets") ? v["data_offsets"] : json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw UserError(at + ": \"data_offsets\" must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (b > end || end > buffer_bytes)
      throw UserError(at + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(end) +
                      "] outside the data buffer of " + std::to_string(buffer_bytes) + " bytes");
    if (numel > std::numeric_limits<uint64_t>::max() / dt->bytes || end - b != numel * dt->bytes)
      throw UserError(at + ": data_offsets span " + std::to_string(end - b) + " bytes, its " + dt->name +
                      " shape needs " + std::to_string(numel * dt->bytes));
    e.begin = b;
    e.end = end;
    out.push_back(std::move(e));
  }
  // The buffer is covered exactly once, in offset order: no overlaps, no holes, nothing after.
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  size_t at = 0;
  for (const auto& e : out) {
    if (e.begin != at)
      throw UserError(where + ": tensor '" + e.name + "' " +
                      (e.begin < at ? "overlaps the one before it" : "leaves a hole before it") +
                      " in the data buffer");
    at = e.end;
  }
  if (at != buffer_bytes)
    throw UserError(where + ": the data buffer has " + std::to_string(buffer_bytes - at) + " bytes no tensor covers");
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path, const Message& what) : m_path(path), m_what(what) {
  const Message where = what + " '" + path + "'";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError(where + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UserError(where + ": not a regular file");
  }
  m_size = static_cast<size_t>(st.st_size);
  if (m_size < 8) {
    ::close(fd);
    throw UserError(where + ": too short for a safetensors file (" + std::to_string(m_size) + " bytes)");
  }
  void* map = ::mmap(nullptr, m_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw UserError(where + ": cannot map (" + std::strerror(errno) + ")");
  m_map = static_cast<const unsigned char*>(map);
  try {
    const uint64_t n = read_le64(m_map);
    if (n > kMaxHeader || n > m_size - 8)
      throw UserError(where + ": header length " + std::to_string(n) + " exceeds the file (" + std::to_string(m_size) +
                      " bytes) or the 100 MB limit");
    m_data = 8 + static_cast<size_t>(n);
    std::string text(reinterpret_cast<const char*>(m_map + 8), static_cast<size_t>(n));
    // Trailing spaces pad the header to an 8-byte boundary.
    text.erase(text.find_last_not_of(' ') == std::string::npos ? 0 : text.find_last_not_of(' ') + 1);
    m_entries = parse_safetensors_header(text, m_size - m_data, where, &m_metadata);
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(m_map), m_size);
    m_map = nullptr;
    throw;
  }
  for (size_t i = 0; i < m_entries.size(); ++i) m_index[m_entries[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() {
  if (m_map) ::munmap(const_cast<unsigned char*>(m_map), m_size);
}

bool SafetensorsFile::has(const std::string& name) const { return m_index.count(name) > 0; }

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = m_index.find(name);
  if (it == m_index.end()) throw UserError(m_what + " '" + m_path + "': no tensor '" + name + "'");
  return m_entries[it->second];
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto& e = entry(name);
  const DtypeInfo* dt = find_dtype(e.dtype);
  auto t = torch::empty(e.shape, torch::TensorOptions().dtype(dt->torch));
  if (e.end > e.begin) std::memcpy(t.data_ptr(), m_map + m_data + e.begin, e.end - e.begin);  // little-endian host
  return t;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  size_t offset = 0;
  for (const auto& [name, t_in] : tensors) {
    if (name.empty() || name == "__metadata__" || header.contains(name))
      throw UserError("safetensors '" + path + "': tensor name '" + name + "' is empty, reserved or repeated");
    auto t = t_in.detach().cpu().contiguous();
    const DtypeInfo& dt = dtype_of(t.scalar_type(), "safetensors '" + path + "': tensor '" + name + "'");
    const size_t bytes = static_cast<size_t>(t.numel()) * dt.bytes;
    header[name] = {{"dtype", dt.name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_atomically(path, [&](const std::string& tmp) {  // publish syncs the file before the rename
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw UserError("cannot create '" + path + "' (" + std::strerror(errno) + ")");
    unsigned char len[8];
    for (int i = 0; i < 8; ++i)
      len[i] = static_cast<unsigned char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
    bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    for (const auto& t : data)
      if (ok && t.numel() > 0)
        ok = std::fwrite(t.data_ptr(), t.element_size(), t.numel(), f) == static_cast<size_t>(t.numel());
    ok = (std::fflush(f) == 0) && ok;
    const int saved = errno;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) throw UserError("cannot write '" + path + "' (" + std::strerror(saved ? saved : EIO) + ")");
  });
}

}  // namespace bs
