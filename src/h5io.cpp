// HDF5 C++ API wrappers. HDF5's automatic error printing is turned off: failures surface as UserError.
#include "h5io.h"

#include <H5Cpp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>

#include "distributed.h"
#include "errors.h"
#include "atomic_file.h"
#include "json_file.h"
#include "provenance.h"
#include "memory.h"
#include "output_set.h"

namespace bs {

namespace {

struct QuietHdf5 {
  QuietHdf5() { H5::Exception::dontPrint(); }
} quiet_hdf5;

H5::H5File open_for_reading(const std::string& path, const Message& option) {
  if (access(path.c_str(), R_OK) != 0) throw UserError(option + " '" + path + "': file not found or not readable");
  try {
    if (!H5::H5File::isHdf5(path)) throw UserError(option + " '" + path + "': not an HDF5 file");
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception&) {
    throw UserError(option + " '" + path + "': not a readable HDF5 file");
  }
}

// std::cerr discarded while alive: HDF5's C++ destructors print their close failures there.
class MuteCerr {
 public:
  MuteCerr() : m_old(std::cerr.rdbuf(nullptr)) {}
  ~MuteCerr() {
    std::cerr.rdbuf(m_old);
    std::cerr.clear();
  }

 private:
  std::streambuf* m_old;
};

// A new dataset at `path`, creating the groups on the way.
H5::DataSet create(H5::H5File& f, const std::string& path, const H5::DataType& type, const H5::DataSpace& space) {
  H5::LinkCreatPropList lcpl;
  H5Pset_create_intermediate_group(lcpl.getId(), 1);
  return f.createDataSet(path, type, space, H5::DSetCreatPropList::DEFAULT, H5::DSetAccPropList::DEFAULT, lcpl);
}

}  // namespace

void require_h5_file(const std::string& path, const Message& option) { open_for_reading(path, option).close(); }

bool h5_has_dataset(const std::string& path, const std::string& name) {
  try {
    H5::H5File f(path, H5F_ACC_RDONLY);
    return f.nameExists(name);
  } catch (const H5::Exception&) {
    return false;
  }
}

torch::Tensor read_h5_dataset(const std::string& path, const std::string& name, const Message& option,
                              const std::optional<std::vector<int64_t>>& expect) {
  H5::H5File f = open_for_reading(path, option);
  try {
    MuteCerr mute;
    if (!f.nameExists(name)) throw UserError(option + " '" + path + "': no dataset /" + name);
    H5::DataSet ds = f.openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    std::vector<hsize_t> dims(space.getSimpleExtentNdims());
    space.getSimpleExtentDims(dims.data());
    std::vector<int64_t> shape(dims.begin(), dims.end());
    if (expect && shape != *expect)
      throw UserError(option + " '" + path + "': dataset /" + name + " has shape " + c10::str(c10::IntArrayRef(shape)) +
                      ", expected " + c10::str(c10::IntArrayRef(*expect)));
    // A damaged header can claim any extent: refuse what could not fit in memory before allocating.
    const double numel = std::accumulate(dims.begin(), dims.end(), 1.0, [](double a, hsize_t d) { return a * d; });
    const double bytes = 8.0 * numel;  // read as float64 or int64
    if (bytes > static_cast<double>(available_memory_bytes()))
      throw UserError(option + " '" + path + "': dataset /" + name + " claims " + format_bytes(bytes) +
                      ", more than the memory available (a damaged file?)");
    const H5T_class_t cls = ds.getTypeClass();
    // Only the element sizes a writer produces: a damaged type's size sets HDF5's conversion buffer
    // (found by fuzz_h5: a float of ~4 GB per element made H5Dread allocate 4 GB for 8 values).
    const size_t esize = ds.getDataType().getSize();
    const bool float_ok = cls == H5T_FLOAT && (esize == 2 || esize == 4 || esize == 8);
    const bool int_ok = cls == H5T_INTEGER && (esize == 1 || esize == 2 || esize == 4 || esize == 8);
    if ((cls == H5T_FLOAT || cls == H5T_INTEGER) && !float_ok && !int_ok)
      throw UserError(option + " '" + path + "': dataset /" + name + " has " + std::to_string(esize) + "-byte " +
                      (cls == H5T_FLOAT ? "floats" : "integers") + " (a damaged file?)");
    // Contiguous data is stored whole: fewer stored bytes than the extent needs means the header lies
    // (found by fuzz_h5: a 1 KB tensor claiming 3.2 GB). Chunked data may be compressed; not checked.
    const double claimed = numel * static_cast<double>(esize);
    if (ds.getCreatePlist().getLayout() == H5D_CONTIGUOUS && static_cast<double>(ds.getStorageSize()) < claimed)
      throw UserError(option + " '" + path + "': dataset /" + name + " claims " + format_bytes(claimed) +
                      " but stores " + format_bytes(static_cast<double>(ds.getStorageSize())) + " (a damaged file?)");
    if (cls == H5T_FLOAT) {
      auto t = torch::empty(shape, torch::kFloat64);
      ds.read(t.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
      return t;
    }
    if (cls == H5T_INTEGER) {
      auto t = torch::empty(shape, torch::kInt64);
      ds.read(t.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
      return t;
    }
    throw UserError(option + " '" + path + "': dataset /" + name + " is neither float nor integer");
  } catch (const H5::Exception& e) {
    throw UserError(option + " '" + path + "': cannot read /" + name + " (" + e.getDetailMsg() + ")");
  }
}

std::optional<std::string> h5_attempt(const std::function<void()>& body) {
  MuteCerr mute;
  try {
    body();
    return std::nullopt;
  } catch (const H5::Exception& e) {
    return e.getDetailMsg();
  }
}

void h5_write_or_fail(const std::string& path, const std::string& tmp, const std::function<void()>& body) {
  errno = 0;
  const auto why = h5_attempt(body);
  if (!why) return;
  const int err = errno;
  std::remove(tmp.c_str());
  throw UserError("cannot write '" + path + "' (" + (err ? std::string(std::strerror(err)) + "; " : "") + *why + ")");
}

H5Output::H5Output(std::string path) : m_path(std::move(path)), m_discard(!dist::is_main()) {
  if (m_discard) return;  // only rank 0 writes files
  m_tmp = temp_name(m_path);
  try {
    MuteCerr mute;
    m_file = std::make_unique<H5::H5File>(m_tmp, H5F_ACC_TRUNC);
  } catch (const H5::Exception&) {
    std::remove(m_tmp.c_str());
    throw UserError("cannot create '" + m_path + "' (is the output folder writable?)");
  }
}

H5Output::~H5Output() {
  if (!m_committed && !m_discard) {
    MuteCerr mute;
    try {
      m_file.reset();
    } catch (...) {  // a destructor never throws: the file is removed whatever happened
    }
    std::remove(m_tmp.c_str());
  }
}

void H5Output::guarded(const std::function<void()>& body) {
  if (m_discard) return;
  try {
    h5_write_or_fail(m_path, m_tmp, body);
  } catch (const UserError&) {
    // HDF5 crashes on a second close of a file whose close failed (a full disk at flush): the handle
    // is abandoned, not closed (main() leaves by _Exit after an error, so no exit handler closes it).
    (void)m_file.release();
    std::remove(m_tmp.c_str());
    m_committed = true;  // nothing left for the destructor
    throw;
  }
}

void H5Output::write(const std::string& path, const torch::Tensor& t_in) {
  if (m_discard) return;
  guarded([&] {
    auto t = t_in.detach().cpu().contiguous();
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
    if (t.numel() == 0) {  // an empty dataset: shape only (HDF5 refuses a write from no buffer)
      create(*m_file, path, t.is_floating_point() ? H5::PredType::NATIVE_DOUBLE : H5::PredType::NATIVE_INT64, space);
    } else if (t.scalar_type() == torch::kFloat64) {
      create(*m_file, path, H5::PredType::NATIVE_DOUBLE, space)
          .write(t.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
    } else if (t.scalar_type() == torch::kFloat32) {
      create(*m_file, path, H5::PredType::NATIVE_FLOAT, space).write(t.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
    } else {
      auto l = t.to(torch::kInt64);
      create(*m_file, path, H5::PredType::NATIVE_INT64, space).write(l.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
    }
  });
}

void H5Output::write(const std::string& path, const std::vector<double>& v) {
  if (m_discard) return;
  write(path, torch::tensor(v, torch::kFloat64).reshape({static_cast<int64_t>(v.size())}));
}

void H5Output::write(const std::string& path, const std::vector<int64_t>& v) {
  if (m_discard) return;
  write(path, torch::tensor(v, torch::kInt64).reshape({static_cast<int64_t>(v.size())}));
}

void H5Output::write(const std::string& path, const std::vector<std::string>& v) {
  if (m_discard) return;
  guarded([&] {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    hsize_t n = v.size();
    H5::DataSpace space(1, &n);
    std::vector<const char*> ptrs;
    for (const auto& s : v) ptrs.push_back(s.c_str());
    auto ds = create(*m_file, path, type, space);
    if (!v.empty()) ds.write(ptrs.data(), type);
  });
}

void H5Output::write(const std::string& path, double v) {
  if (m_discard) return;
  guarded([&] {
    H5::DataSpace scalar;
    create(*m_file, path, H5::PredType::NATIVE_DOUBLE, scalar).write(&v, H5::PredType::NATIVE_DOUBLE);
  });
}

void H5Output::write(const std::string& path, int64_t v) {
  if (m_discard) return;
  guarded([&] {
    H5::DataSpace scalar;
    create(*m_file, path, H5::PredType::NATIVE_INT64, scalar).write(&v, H5::PredType::NATIVE_INT64);
  });
}

void H5Output::attribute(const std::string& name, const std::string& value) {
  if (m_discard) return;
  guarded([&] {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    H5::DataSpace scalar;
    const char* p = value.c_str();
    m_file->openGroup("/").createAttribute(name, type, scalar).write(type, &p);
  });
}

void H5Output::provenance() {
  for (const auto& [name, value] : bs::provenance()) attribute(name, value);
}

void H5Output::commit(OutputSet* set) {
  if (m_discard) return;
  if (set) attribute("set_id", set->id());
  guarded([&] {
    m_file->close();  // flushes: a full disk shows here at the latest
    m_file.reset();
  });
  if (set) {  // the set renames it, with the others
    set->stage(m_path, m_tmp);
    m_committed = true;
    return;
  }
  m_committed = true;  // published or removed: either way nothing is left to clean up
  publish(m_tmp, m_path);
}

}  // namespace bs
