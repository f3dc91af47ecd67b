// Sharpness over training (issue: profile -> configs -> train -> look): every K steps, on a fixed probe
// batch, the top Hessian eigenvalue by Lanczos warm-started from the previous eigenvector, average
// sharpness per block kind from the all-block Hutchinson trace, the directional sharpness of the last
// update (Pan & Li), the gradient noise scale over the probe batch's rows, the gradient norm and the
// loss; appended to DIR/trace.h5.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "gradient_noise.h"
#include "hutchinson.h"
#include "context.h"
#include "hvp_operator.h"
#include "spectral.h"

namespace bs {

struct TraceOptions {
  int64_t every = 0;                         // 0: off
  int64_t probes = 4;                        // Hutchinson probes per record
  int64_t batch_size = 2;                    // probe batch rows (the first rows of the first validation batch); 0: all
  double tol = 1e-4;                         // Lanczos tolerance of the tracked lambda_max
  bool block_eigs = false;                   // per-tensor lambda_max too (costly)
  Curvature curvature = Curvature::Hessian;  // the matrix whose lambda_max and traces are tracked
};

struct TraceRecord {
  int64_t step = 0;
  double loss = 0, probe_loss = 0, lr = 0, grad_norm = 0, lambda_max = 0, directional = NAN;
  int64_t lanczos_products = 0;
  double noise_scale = NAN;  // gradient noise scale B_simple over the probe batch's rows (>= 2 rows)
  std::map<std::string, double> kind_sharpness;  // kind -> Tr(H_kk)/numel
  std::vector<double> block_lambda_max;          // per tensor when block_eigs
};

// Measures one record at the current parameters; `update` is the last optimizer update (flat, may be
// undefined). Keeps the top eigenvector to warm-start the next record.
class Tracer {
 public:
  // The probe batch: the first validation batch of `data` when there is one, else the first training batch.
  Tracer(const Context& c, const DataSource& data, TraceOptions o);
  TraceRecord measure(int64_t step, double train_loss, double lr, const torch::Tensor& update);
  // The warm start (the last top eigenvector, undefined before the first record): checkpointed, so a
  // resumed run measures its records exactly as the uninterrupted one does.
  const torch::Tensor& warm_start() const { return m_warm; }
  void set_warm_start(torch::Tensor v) { m_warm = std::move(v); }

 private:
  Context m_c;
  TraceOptions m_o;
  Batch m_probe;
  torch::Tensor m_warm;
};

// trace.h5: extendible, chunked datasets along the step axis (/step, /loss, /probe_loss, /lr,
// /grad_norm, /noise_scale, /sharpness/lambda_max, /sharpness/directional, /sharpness/lanczos_products,
// /sharpness/kind/<Kind>, /sharpness/block_lambda_max [n, B]; attribute curvature). Each append rewrites the file under
// a temporary name and renames it, so a crash at any point leaves the previous complete file.
class TraceFile {
 public:
  // Opens DIR/trace.h5: with `resume_step` >= 0 keeps the records with step <= resume_step (the ones an
  // interrupted run had checkpointed), otherwise starts empty.
  TraceFile(std::string path, int64_t resume_step, std::vector<std::string> block_names,
            Curvature curvature = Curvature::Hessian);
  void append(const TraceRecord& r);
  size_t size() const { return m_records.size(); }

 private:
  void write() const;
  std::string m_path;
  std::vector<std::string> m_blocks;
  std::vector<TraceRecord> m_records;
  Curvature m_curvature;
};

}  // namespace bs
