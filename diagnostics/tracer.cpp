// Tracer and trace.h5.
#include "tracer.h"

#include <H5Cpp.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "batch_loss.h"
#include "distributed.h"
#include "errors.h"
#include "h5io.h"
#include "atomic_file.h"
#include "json_file.h"

namespace bs {

Tracer::Tracer(const Context& c, const DataSource& data, TraceOptions o) : m_c(c), m_o(o) {
  if (m_o.probes < 2) throw UserError("--trace-probes must be at least 2");
  // A fixed probe batch: the first validation batch when there is one, else the first training batch.
  // Its first --trace-batch-size rows are cut before sharding, so data-parallel ranks share the same rows.
  m_probe = batch_to(data.n_val_batches() > 0 ? data.val_batch(0) : data.train_batch(0), c.dtype);
  if (m_o.batch_size < 0) throw UserError("--trace-batch-size must be >= 0");
  if (m_o.batch_size > 0 && m_o.batch_size < m_probe.inputs.size(0)) {
    m_probe.inputs = m_probe.inputs.narrow(0, 0, m_o.batch_size);
    m_probe.targets = m_probe.targets.narrow(0, 0, m_o.batch_size);
  }
  m_probe = dist::shard(m_probe, "--trace-batch-size");
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

TraceFile::TraceFile(std::string path, int64_t resume_step, std::vector<std::string> block_names, Curvature curvature,
                     bool preconditioned)
    : m_path(std::move(path)),
      m_blocks(std::move(block_names)),
      m_curvature(curvature),
      m_preconditioned(preconditioned) {
  if (resume_step < 0 || access(m_path.c_str(), F_OK) != 0) return;
  // Keep the records of the interrupted run up to its checkpoint: those after it are measured again.
  auto steps = read_h5_dataset(m_path, "step", "--resume");
  auto col = [&](const std::string& name) { return read_h5_dataset(m_path, name, "--resume"); };
  auto loss = col("loss"), probe = col("probe_loss"), lr = col("lr"), gn = col("grad_norm");
  const bool has_noise = h5_has_dataset(m_path, "noise_scale");
  const bool has_pre = h5_has_dataset(m_path, "sharpness/preconditioned_lambda_max");
  torch::Tensor thr = has_pre ? col("sharpness/threshold") : torch::Tensor(),
                plm = has_pre ? col("sharpness/preconditioned_lambda_max") : torch::Tensor(),
                pth = has_pre ? col("sharpness/preconditioned_threshold") : torch::Tensor(),
                ppr = has_pre ? col("sharpness/preconditioned_products")
                              : torch::Tensor();  // files before it was recorded lack it
  torch::Tensor noise = has_noise ? col("noise_scale") : torch::Tensor();
  auto lmax = col("sharpness/lambda_max"), dir = col("sharpness/directional"), prod = col("sharpness/lanczos_products");
  std::map<std::string, torch::Tensor> kinds;
  for (const char* k : {"Emb", "QK", "VO", "FFN", "Norm", "Head", "Bias", "Other"})
    if (h5_has_dataset(m_path, std::string("sharpness/kind/") + k)) kinds[k] = col(std::string("sharpness/kind/") + k);
  const bool blocks = h5_has_dataset(m_path, "sharpness/block_lambda_max");
  torch::Tensor bl = blocks ? col("sharpness/block_lambda_max") : torch::Tensor();
  for (int64_t i = 0; i < steps.numel(); ++i) {
    TraceRecord r;
    r.step = steps[i].item<int64_t>();
    if (r.step > resume_step) break;
    r.loss = loss[i].item<double>();
    r.probe_loss = probe[i].item<double>();
    r.lr = lr[i].item<double>();
    r.grad_norm = gn[i].item<double>();
    if (has_noise) r.noise_scale = noise[i].item<double>();
    if (has_pre) {
      r.threshold = thr[i].item<double>();
      r.preconditioned_lambda_max = plm[i].item<double>();
      r.preconditioned_threshold = pth[i].item<double>();
      r.preconditioned_products = ppr[i].item<int64_t>();
    }
    r.lambda_max = lmax[i].item<double>();
    r.directional = dir[i].item<double>();
    r.lanczos_products = prod[i].item<int64_t>();
    for (auto& [k, t] : kinds) r.kind_sharpness[k] = t[i].item<double>();
    if (blocks)
      for (int64_t b = 0; b < bl.size(1); ++b) r.block_lambda_max.push_back(bl[i][b].item<double>());
    m_records.push_back(r);
  }
  write();  // drop the records past the checkpoint now
}

void TraceFile::append(const TraceRecord& r) {
  m_records.push_back(r);
  write();
}

void TraceFile::write() const {
  const std::string tmp = temp_name(m_path);
  h5_write_or_fail(m_path, tmp, [&] {
    H5::H5File f(tmp, H5F_ACC_TRUNC);
    const hsize_t n = m_records.size();
    auto column = [&](const std::string& name, auto get, const H5::PredType& type, auto zero) {
      using V = decltype(zero);
      std::vector<V> v;
      for (const auto& r : m_records) v.push_back(get(r));
      hsize_t dims[1] = {n}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {64};
      H5::DataSpace space(1, dims, maxdims);
      H5::DSetCreatPropList plist;
      plist.setChunk(1, chunk);
      H5::LinkCreatPropList lcpl;
      H5Pset_create_intermediate_group(lcpl.getId(), 1);
      auto ds = f.createDataSet(name, type, space, plist, H5::DSetAccPropList::DEFAULT, lcpl);
      if (n > 0) ds.write(v.data(), type);
    };
    column(
        "step", [](const TraceRecord& r) { return r.step; }, H5::PredType::NATIVE_INT64, int64_t{0});
    column(
        "loss", [](const TraceRecord& r) { return r.loss; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    column(
        "probe_loss", [](const TraceRecord& r) { return r.probe_loss; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    column(
        "lr", [](const TraceRecord& r) { return r.lr; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    column(
        "grad_norm", [](const TraceRecord& r) { return r.grad_norm; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    column(
        "noise_scale", [](const TraceRecord& r) { return r.noise_scale; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    if (m_preconditioned) {
      column(
          "sharpness/threshold", [](const TraceRecord& r) { return r.threshold; }, H5::PredType::NATIVE_DOUBLE, 0.0);
      column(
          "sharpness/preconditioned_lambda_max", [](const TraceRecord& r) { return r.preconditioned_lambda_max; },
          H5::PredType::NATIVE_DOUBLE, 0.0);
      column(
          "sharpness/preconditioned_threshold", [](const TraceRecord& r) { return r.preconditioned_threshold; },
          H5::PredType::NATIVE_DOUBLE, 0.0);
      column(
          "sharpness/preconditioned_products", [](const TraceRecord& r) { return r.preconditioned_products; },
          H5::PredType::NATIVE_INT64, int64_t{0});
    }
    column(
        "sharpness/lambda_max", [](const TraceRecord& r) { return r.lambda_max; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    column(
        "sharpness/directional", [](const TraceRecord& r) { return r.directional; }, H5::PredType::NATIVE_DOUBLE, 0.0);
    column(
        "sharpness/lanczos_products", [](const TraceRecord& r) { return r.lanczos_products; },
        H5::PredType::NATIVE_INT64, int64_t{0});
    if (!m_records.empty())
      for (const auto& [kind, v] : m_records.front().kind_sharpness) {
        const std::string k = kind;
        column(
            "sharpness/kind/" + k,
            [k](const TraceRecord& r) { return r.kind_sharpness.count(k) ? r.kind_sharpness.at(k) : NAN; },
            H5::PredType::NATIVE_DOUBLE, 0.0);
      }
    if (!m_records.empty() && !m_records.front().block_lambda_max.empty()) {
      const hsize_t B = m_records.front().block_lambda_max.size();
      std::vector<double> v;
      for (const auto& r : m_records) v.insert(v.end(), r.block_lambda_max.begin(), r.block_lambda_max.end());
      hsize_t dims[2] = {n, B}, maxdims[2] = {H5S_UNLIMITED, B}, chunk[2] = {16, B};
      H5::DataSpace space(2, dims, maxdims);
      H5::DSetCreatPropList plist;
      plist.setChunk(2, chunk);
      f.openGroup("sharpness")
          .createDataSet("block_lambda_max", H5::PredType::NATIVE_DOUBLE, space, plist)
          .write(v.data(), H5::PredType::NATIVE_DOUBLE);
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
}

}  // namespace bs
