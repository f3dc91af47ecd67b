// Tracer and trace.h5.
#include "tracer.h"

#include <H5Cpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <type_traits>

#include "batch_loss.h"
#include "distributed.h"
#include "errors.h"
#include "h5io.h"
#include "atomic_file.h"
#include "json_file.h"

namespace bs {

Tracer::Tracer(const Context& c, const DataSource& data, TraceOptions o) : m_c(c), m_o(o) {
  if (m_o.probes < 2) throw UserError(param("trace_probes") + " must be at least 2");
  // A fixed probe batch: the first validation batch when there is one, else the first training batch.
  // Its first --trace-batch-size rows are cut before sharding, so data-parallel ranks share the same rows.
  m_probe = batch_to(data.n_val_batches() > 0 ? data.val_batch(0) : data.train_batch(0), c.dtype);
  if (m_o.batch_size < 0) throw UserError(param("trace_batch_size") + " must be >= 0");
  if (m_o.batch_size > 0 && m_o.batch_size < m_probe.inputs.size(0)) {
    m_probe.inputs = m_probe.inputs.narrow(0, 0, m_o.batch_size);
    m_probe.targets = m_probe.targets.narrow(0, 0, m_o.batch_size);
  }
  m_probe = dist::shard(m_probe, param("trace_batch_size"));
}

TraceRecord Tracer::measure(int64_t step, double train_loss, double lr, const torch::Tensor& update,
                            const Preconditioning* pre) {
  m_c.net->set_train(false);
  HvpOperator H(*m_c.net, {m_probe}, m_c.loss, m_c.data, {m_o.curvature, m_c.seed});
  TraceRecord r;
  r.step = step;
  r.loss = train_loss;
  r.lr = lr;
  r.probe_loss = H.loss();
  r.grad_norm = H.gradient().norm().item<double>();
  const int64_t rows = m_probe.inputs.size(0);
  if (rows >= 2) {
    auto row = [&](int64_t i) { return Batch{m_probe.inputs.narrow(0, i, 1), m_probe.targets.narrow(0, i, 1)}; };
    r.noise_scale = gradient_noise(m_c, H.table(), row, rows).global.b_simple;
  }
  EigOptions eo;
  eo.k = 1;
  eo.ncv = 6;  // a small basis: warm-started from the last eigenvector, a few products suffice
  eo.tol = m_o.tol;
  eo.seed = m_c.seed;
  if (m_warm.defined()) eo.start = m_warm;
  const auto eig = lanczos_eigs(H.as_op(), H.size(), eo);
  r.lambda_max = eig.values.empty() ? NAN : eig.values.front();
  r.lanczos_products = eig.n_products;
  if (!eig.vectors.empty()) m_warm = eig.vectors.front();
  const auto tr = hutchinson(H.as_op(), H.table(), m_o.probes, m_c.seed + static_cast<uint64_t>(step), H.dtype());
  std::map<std::string, std::pair<double, int64_t>> kinds;
  const auto& blocks = H.table().blocks();
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto& k = kinds[to_string(blocks[i].kind)];
    k.first += tr.block_trace[i];
    k.second += blocks[i].numel;
  }
  for (const auto& [kind, v] : kinds) r.kind_sharpness[kind] = v.first / static_cast<double>(v.second);
  if (update.defined() && update.norm().item<double>() > 0) r.directional = directional_sharpness(H, update);
  r.threshold = 2 / lr;
  if (pre && pre->step_sizes.defined()) {
    // lambda_max(D^1/2 H D^1/2) by Lanczos, warm-started like lambda_max; over eta it is the sharpness
    // with the learning rate outside the preconditioner.
    const auto root = pre->step_sizes.sqrt().to(H.dtype());
    const LinearOp scaled = [&](const torch::Tensor& v) { return root * H.apply(root * v.to(H.dtype())); };
    EigOptions po = eo;
    po.start = m_warm_pre.defined() ? m_warm_pre : torch::Tensor();
    const auto pe = lanczos_eigs(scaled, H.size(), po);
    r.preconditioned_lambda_max = pe.values.empty() ? NAN : pe.values.front() / lr;
    r.preconditioned_threshold = pre->threshold / lr;
    r.preconditioned_products = pe.n_products;
    if (!pe.vectors.empty()) m_warm_pre = pe.vectors.front();
  }
  if (m_o.block_eigs)
    for (size_t i = 0; i < blocks.size(); ++i)
      r.block_lambda_max.push_back(block_lambda_max(H, {i}, m_o.tol, m_c.seed + i));
  m_c.net->set_train(true);  // the tracer runs inside the training loop
  return r;
}

torch::Tensor Tracer::warm_start() const {
  if (!m_warm_pre.defined() || !m_warm.defined()) return m_warm;
  return torch::stack({m_warm, m_warm_pre});
}

void Tracer::set_warm_start(const torch::Tensor& v) {
  if (v.dim() == 2) {
    m_warm = v[0].clone();
    m_warm_pre = v[1].clone();
  } else {
    m_warm = v;
  }
}

namespace {

// One column of trace.h5 along the step axis: its path, whether it is stored as int64, and how a
// record gives and takes its value (integers pass through double exactly: steps and counts < 2^53).
struct Column {
  std::string name;
  bool integer;
  std::function<double(const TraceRecord&)> get;
  std::function<void(TraceRecord&, double)> set;
};

template <class T>
Column field(std::string name, T TraceRecord::*member) {
  return {std::move(name), std::is_integral_v<T>,
          [member](const TraceRecord& r) { return static_cast<double>(r.*member); },
          [member](TraceRecord& r, double v) { r.*member = static_cast<T>(v); }};
}

// Every column but the 2-D block_lambda_max, /step first.
std::vector<Column> columns(const std::vector<std::string>& kinds, bool preconditioned) {
  std::vector<Column> c = {field("step", &TraceRecord::step),
                           field("loss", &TraceRecord::loss),
                           field("probe_loss", &TraceRecord::probe_loss),
                           field("lr", &TraceRecord::lr),
                           field("grad_norm", &TraceRecord::grad_norm),
                           field("noise_scale", &TraceRecord::noise_scale)};
  if (preconditioned) {
    c.push_back(field("sharpness/threshold", &TraceRecord::threshold));
    c.push_back(field("sharpness/preconditioned_lambda_max", &TraceRecord::preconditioned_lambda_max));
    c.push_back(field("sharpness/preconditioned_threshold", &TraceRecord::preconditioned_threshold));
    c.push_back(field("sharpness/preconditioned_products", &TraceRecord::preconditioned_products));
  }
  c.push_back(field("sharpness/lambda_max", &TraceRecord::lambda_max));
  c.push_back(field("sharpness/directional", &TraceRecord::directional));
  c.push_back(field("sharpness/lanczos_products", &TraceRecord::lanczos_products));
  for (const auto& k : kinds)
    c.push_back({"sharpness/kind/" + k, false,
                 [k](const TraceRecord& r) { return r.kind_sharpness.count(k) ? r.kind_sharpness.at(k) : NAN; },
                 [k](TraceRecord& r, double v) { r.kind_sharpness[k] = v; }});
  return c;
}

const H5::PredType& type_of(const Column& c) {
  return c.integer ? H5::PredType::NATIVE_INT64 : H5::PredType::NATIVE_DOUBLE;
}

// The file behind a path (device, inode): an in-place append goes only into the file this object wrote.
std::pair<uint64_t, uint64_t> identity(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {0, 0};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

// Records the chunks of a file rewritten at n records hold: room to double, at least 64.
hsize_t capacity_for(size_t n) {
  hsize_t c = 64;
  while (c < 2 * n) c *= 2;
  return c;
}

}  // namespace

TraceFile::TraceFile(std::string path, int64_t resume_step, std::vector<std::string> block_names, Curvature curvature,
                     bool preconditioned)
    : m_path(std::move(path)),
      m_blocks(std::move(block_names)),
      m_curvature(curvature),
      m_preconditioned(preconditioned) {
  if (resume_step >= 0 && access(m_path.c_str(), F_OK) == 0) {
    // Keep the records of the interrupted run up to its checkpoint: those after it are measured again.
    // /step is the record count: an append killed part-way may have lengthened other columns (it
    // writes /step last), never /step alone.
    const auto steps = read_h5_dataset(m_path, "step", param("resume"));
    std::vector<std::string> kinds;
    for (int k = 0; k <= static_cast<int>(BlockKind::Other); ++k) {
      const std::string kind = to_string(static_cast<BlockKind>(k));
      if (h5_has_dataset(m_path, "sharpness/kind/" + kind)) kinds.push_back(kind);
    }
    int64_t n = 0;
    while (n < steps.numel() && steps[n].item<int64_t>() <= resume_step) ++n;
    m_records.resize(n);
    // Files written before a column was recorded lack it (noise_scale, the preconditioned ones): NaN.
    for (const auto& c : columns(kinds, true)) {
      if (!h5_has_dataset(m_path, c.name)) continue;
      const auto v = read_h5_dataset(m_path, c.name, param("resume")).to(torch::kFloat64).contiguous();
      if (v.numel() < n)
        throw UserError(param("resume") + " '" + m_path + "': column " + c.name + " is shorter than /step");
      for (int64_t i = 0; i < n; ++i) c.set(m_records[i], v.data_ptr<double>()[i]);
    }
    if (h5_has_dataset(m_path, "sharpness/block_lambda_max")) {
      const auto bl = read_h5_dataset(m_path, "sharpness/block_lambda_max", param("resume")).to(torch::kFloat64);
      if (bl.dim() != 2 || bl.size(0) < n)
        throw UserError(param("resume") + " '" + m_path + "': sharpness/block_lambda_max is shorter than /step");
      for (int64_t i = 0; i < n; ++i) {
        const auto row = bl[i].contiguous();
        m_records[i].block_lambda_max.assign(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
      }
    }
  }
  rewrite();  // drop the records past the checkpoint now
}

void TraceFile::append(const TraceRecord& r) {
  m_records.push_back(r);
  if (!append_in_place()) rewrite();
}

std::vector<std::string> TraceFile::kinds() const {
  std::vector<std::string> k;
  if (!m_records.empty())
    for (const auto& [kind, v] : m_records.front().kind_sharpness) k.push_back(kind);
  return k;
}

void TraceFile::rewrite() {
  const hsize_t n = m_records.size(), capacity = capacity_for(n);
  const std::string tmp = temp_name(m_path);
  h5_write_or_fail(m_path, tmp, [&] {
    H5::H5File f(tmp, H5F_ACC_TRUNC);
    H5::LinkCreatPropList lcpl;
    H5Pset_create_intermediate_group(lcpl.getId(), 1);
    // An extendible dataset whose first chunk holds `capacity` records: appends up to it write in place.
    auto create = [&](const std::string& name, const H5::PredType& type, hsize_t width, const void* data) {
      const int rank = width ? 2 : 1;
      hsize_t dims[2] = {n, width}, maxdims[2] = {H5S_UNLIMITED, width}, chunk[2] = {capacity, width};
      H5::DataSpace space(rank, dims, maxdims);
      H5::DSetCreatPropList plist;
      plist.setChunk(rank, chunk);
      auto ds = f.createDataSet(name, type, space, plist, H5::DSetAccPropList::DEFAULT, lcpl);
      if (n > 0) ds.write(data, type);
    };
    for (const auto& c : columns(kinds(), m_preconditioned)) {
      std::vector<double> real;
      std::vector<int64_t> whole;
      for (const auto& r : m_records) {
        if (c.integer)
          whole.push_back(static_cast<int64_t>(c.get(r)));
        else
          real.push_back(c.get(r));
      }
      create(c.name, type_of(c), 0, c.integer ? static_cast<const void*>(whole.data()) : real.data());
    }
    if (!m_records.empty() && !m_records.front().block_lambda_max.empty()) {
      std::vector<double> v;
      for (const auto& r : m_records) v.insert(v.end(), r.block_lambda_max.begin(), r.block_lambda_max.end());
      create("sharpness/block_lambda_max", H5::PredType::NATIVE_DOUBLE, m_records.front().block_lambda_max.size(),
             v.data());
    }
    if (!m_blocks.empty()) {
      H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
      hsize_t nb = m_blocks.size();
      H5::DataSpace space(1, &nb);
      std::vector<const char*> ptrs;
      for (const auto& b : m_blocks) ptrs.push_back(b.c_str());
      f.createDataSet("blocks", type, space).write(ptrs.data(), type);
    }
    // Which matrix lambda_max and the kind sharpness are of; a file without it is of the Hessian.
    const std::string curvature = word_of(m_curvature, curvature_words());
    H5::StrType str(H5::PredType::C_S1, H5T_VARIABLE);
    const char* cs = curvature.c_str();
    f.createAttribute("curvature", str, H5::DataSpace(H5S_SCALAR)).write(str, &cs);
    f.flush(H5F_SCOPE_GLOBAL);
    f.close();
  });
  publish(tmp, m_path);
  m_capacity = capacity;
  m_identity = identity(m_path);
  ++m_rewrites;
}

bool TraceFile::append_in_place() {
  const hsize_t n = m_records.size();  // with the new record
  // The first record allocates the chunks; past the capacity a new chunk would change the file's
  // layout: both are rewrites. So is a file replaced since (or locked by a reader: HDF5 refuses the open).
  if (n < 2 || n > m_capacity || identity(m_path) != m_identity) return false;
  const TraceRecord& r = m_records.back();
  const auto cols = columns(kinds(), m_preconditioned);
  const bool blocks = !r.block_lambda_max.empty();
  bool appended = false;
  // A failure returns false: the rewrite replaces whatever this left.
  const auto failed = h5_attempt([&] {
    H5::H5File f(m_path, H5F_ACC_RDWR);
    H5::DSetAccPropList direct;  // no chunk cache: a row goes straight to its place in the allocated chunk
    direct.setChunkCache(H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT);
    // Every dataset must hold the n-1 records this object wrote before any is touched.
    std::vector<H5::DataSet> sets;
    for (const auto& c : cols) sets.push_back(f.openDataSet(c.name, direct));
    if (blocks) sets.push_back(f.openDataSet("sharpness/block_lambda_max", direct));
    for (auto& ds : sets) {
      hsize_t dims[2] = {0, 0};
      ds.getSpace().getSimpleExtentDims(dims);
      if (dims[0] != n - 1) return;
    }
    auto put = [&](H5::DataSet& ds, const void* value, const H5::PredType& type, hsize_t width) {
      const int rank = width ? 2 : 1;
      hsize_t dims[2] = {n, width}, start[2] = {n - 1, 0}, count[2] = {1, width};
      ds.extend(dims);
      H5::DataSpace file_space = ds.getSpace(), memory(rank, count);
      file_space.selectHyperslab(H5S_SELECT_SET, count, start);
      ds.write(value, type, memory, file_space);
      // A failed flush fails the append (the rewrite then replaces the file), as an exception would.
      if (H5Dflush(ds.getId()) < 0) throw H5::DataSetIException("H5Dflush", "flushing " + ds.getObjName() + " failed");
    };
    if (blocks) put(sets.back(), r.block_lambda_max.data(), H5::PredType::NATIVE_DOUBLE, r.block_lambda_max.size());
    // /step last: a kill part-way leaves some columns one record longer than /step, which counts the records.
    for (size_t i = cols.size(); i-- > 0;) {
      const double real = cols[i].get(r);
      const int64_t whole = static_cast<int64_t>(real);
      put(sets[i], cols[i].integer ? static_cast<const void*>(&whole) : &real, type_of(cols[i]), 0);
    }
    sets.clear();
    f.close();
    appended = true;
  });
  return appended && !failed;
}

}  // namespace bs
