// Sharpness over training (issue: profile -> configs -> train -> look): every K steps, on a fixed probe
// batch, the top Hessian eigenvalue by Lanczos warm-started from the previous eigenvector, average
// sharpness per block kind from the all-block Hutchinson trace, the directional sharpness of the last
// update (Pan & Li), the gradient noise scale over the probe batch's rows, the gradient norm and the
// loss; appended to DIR/trace.h5.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
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
  bool preconditioned = false;               // also lambda_max(P^-1 H) of the live optimizer (--trace-preconditioned)
};

// The optimizer's preconditioner as the tracer takes it (the training loop converts the optimizer's
// StepSizes): D = eta_i / P_i per coordinate (flat, float64), and the threshold of lambda_max(D^1/2 H D^1/2).
struct Preconditioning {
  torch::Tensor step_sizes;
  double threshold = 2;
};

struct TraceRecord {
  int64_t step = 0;
  double loss = 0, probe_loss = 0, lr = 0, grad_norm = 0, lambda_max = 0, directional = NAN;
  int64_t lanczos_products = 0;
  double noise_scale = NAN;  // gradient noise scale B_simple over the probe batch's rows (>= 2 rows)
  std::map<std::string, double> kind_sharpness;  // kind -> Tr(H_kk)/numel
  std::vector<double> block_lambda_max;          // per tensor when block_eigs
  // With preconditioning (eta the record's lr): lambda_max(P^-1/2 H P^-1/2) with eta outside P, i.e.
  // lambda_max(D^1/2 H D^1/2) / eta, and its threshold (38/eta for Adam at beta1 0.9); 2/eta is
  // lambda_max's. NaN when not measured (or before the optimizer's first step).
  double preconditioned_lambda_max = NAN, preconditioned_threshold = NAN, threshold = NAN;
  int64_t preconditioned_products = 0;
};

// Measures one record at the current parameters; `update` is the last optimizer update (flat, may be
// undefined). Keeps the top eigenvector to warm-start the next record.
class Tracer {
 public:
  // The probe batch: the first validation batch of `data` when there is one, else the first training batch.
  Tracer(const Context& c, const DataSource& data, TraceOptions o);
  TraceRecord measure(int64_t step, double train_loss, double lr, const torch::Tensor& update,
                      const Preconditioning* pre = nullptr);
  // The warm start (the last top eigenvector, undefined before the first record; with the
  // preconditioned one, both as the rows of a [2, n] tensor): checkpointed, so a resumed run measures
  // its records exactly as the uninterrupted one does.
  torch::Tensor warm_start() const;
  void set_warm_start(const torch::Tensor& v);

 private:
  Context m_c;
  TraceOptions m_o;
  Batch m_probe;
  torch::Tensor m_warm, m_warm_pre;
};

// trace.h5: extendible, chunked datasets along the step axis (/step, /loss, /probe_loss, /lr,
// /grad_norm, /noise_scale, /sharpness/threshold, /sharpness/preconditioned_lambda_max,
// /sharpness/preconditioned_threshold, /sharpness/preconditioned_products, /sharpness/lambda_max,
// /sharpness/directional, /sharpness/lanczos_products, /sharpness/kind/<Kind>, /sharpness/block_lambda_max [n, B];
// attribute curvature).
// An append writes its record in place into the chunks' room (one row per dataset, /step last, each
// flushed), so its cost does not grow with the run. When the room is spent the whole file is rewritten
// under a temporary name and renamed, with chunks twice the records' count: O(log n) rewrites, O(1)
// amortised per record. A kill leaves a readable file: the previous one, or one whose other columns
// may hold one record more than /step, the record count (a resume keeps /step's).
class TraceFile {
 public:
  // Opens DIR/trace.h5: with `resume_step` >= 0 keeps the records with step <= resume_step (the ones an
  // interrupted run had checkpointed), otherwise starts empty.
  TraceFile(std::string path, int64_t resume_step, std::vector<std::string> block_names,
            Curvature curvature = Curvature::Hessian, bool preconditioned = false);
  void append(const TraceRecord& r);
  size_t size() const { return m_records.size(); }
  int64_t rewrites() const { return m_rewrites; }  // whole-file writes so far (the constructor's included)

 private:
  void rewrite();
  bool append_in_place();  // false (having changed nothing a rewrite does not replace) when it cannot
  std::vector<std::string> kinds() const;
  std::string m_path;
  std::vector<std::string> m_blocks;
  std::vector<TraceRecord> m_records;
  Curvature m_curvature;
  bool m_preconditioned;
  uint64_t m_capacity = 0;                   // records the file's chunks hold
  std::pair<uint64_t, uint64_t> m_identity;  // (device, inode) of the file last rewritten
  int64_t m_rewrites = 0;
};

}  // namespace bs
