// Profile: every curvature number blocksharp measures for one model on fixed batches, global and
// per block (parameter tensor) and per block kind; written to profile.h5 (DESIGN.md paths).
#pragma once
#include <string>
#include <vector>

#include "hutchinson.h"
#include "output_set.h"
#include "session.h"
#include "slq_density.h"
#include "spectral.h"

namespace bs {

struct ProfileOptions {
  int64_t topk = 5;
  int64_t probes = 100;
  std::string trace_estimator = "hutchinson";  // hutchinson | hutch++ (the largest multiple of 3 <= probes)
  int64_t batches = 1;
  std::string method = "lanczos";     // lanczos | power
  std::string which = "LA";           // LA | SA | LM (Lanczos)
  std::string block_eigs = "kinds";   // none | kinds | all
  int64_t density_runs = 3, density_steps = 80;
  bool reorth = true;
  double tol = 1e-10;                 // Lanczos; power iteration uses PyHessian's 1e-3 unless set
  int64_t gn_samples = 1;
  bool keep_graphs = true;
};

// SGD-SaI's g-SNR of one tensor's gradient: ||g|| / (std(g) + eps), std unbiased (N-1) and NaN -> 0
// for one-element tensors (ALGORITHMS.md 3).
double gsnr(const torch::Tensor& g, double eps = 1e-8);

// Per-parameter g-SNR averaged over the gradients of batches 0..batches-1 (1 = SGD-SaI's first step).
std::vector<double> gsnr_over_batches(Session& s, int64_t batches);

struct BlockStats {
  std::string name;    // the tensor's name; a fused tensor's slices add [q], [k], [v]
  std::string tensor;  // the tensor's name
  BlockKind kind = BlockKind::Other;
  int64_t numel = 0;
  double trace = 0, trace_stderr = 0, avg_sharpness = 0, lambda_max = NAN, gsnr = 0, gn_diag_avg = NAN;
};

struct KindStats {
  BlockKind kind = BlockKind::Other;
  int64_t numel = 0, n_tensors = 0;
  double trace = 0, trace_stderr = 0, avg_sharpness = 0, lambda_max = NAN;
};

struct Profile {
  double loss = 0;
  EigResult global;
  TraceResult trace;
  Density density;
  std::vector<BlockStats> blocks;
  std::vector<KindStats> kinds;
  int64_t n_hvp_global = 0, n_hvp_total = 0;
  double seconds = 0;
  bool density_reorth = true;  // false when memory forced SLQ without reorthogonalisation
};

Profile run_profile(Session& s, const ProfileOptions& opt);
// With a set, the file is staged into it (renamed by OutputSet::commit with the configs).
void write_profile_h5(const std::string& path, const Profile& p, const Session& s, const ProfileOptions& opt,
                      OutputSet* set = nullptr);
void print_profile(const Profile& p, const Session& s);

}  // namespace bs
