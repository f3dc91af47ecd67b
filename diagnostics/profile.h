// Profile: every curvature number blocksharp measures for one model on fixed batches, global and
// per block (parameter tensor) and per block kind; written to profile.h5 (DESIGN.md paths).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "hutchinson.h"
#include "output_set.h"
#include "context.h"
#include "slq_density.h"
#include "spectral.h"
#include "gradient_noise.h"
#include "gsnr.h"

namespace bs {

enum class EigMethod { Lanczos, Power };    // Spectra's Lanczos | PyHessian's deflated power iteration
enum class BlockEigs { None, Kinds, All };  // lambda_max of no block, of each kind's, of every tensor's too
enum class TraceEstimator { Hutchinson, HutchPlusPlus };  // hutch++: the largest multiple of 3 <= probes
const char* to_string(EigMethod m);                       // "lanczos", "power"
const char* to_string(BlockEigs b);                       // "none", "kinds", "all"
const char* to_string(TraceEstimator t);                  // "hutchinson", "hutch++"
inline const Words<EigMethod>& eig_method_words() {
  static const Words<EigMethod> w{{"lanczos", EigMethod::Lanczos}, {"power", EigMethod::Power}};
  return w;
}
inline const Words<BlockEigs>& block_eigs_words() {
  static const Words<BlockEigs> w{{"none", BlockEigs::None}, {"kinds", BlockEigs::Kinds}, {"all", BlockEigs::All}};
  return w;
}
inline const Words<TraceEstimator>& trace_estimator_words() {
  static const Words<TraceEstimator> w{{"hutchinson", TraceEstimator::Hutchinson},
                                       {"hutch++", TraceEstimator::HutchPlusPlus}};
  return w;
}

struct ProfileOptions {
  int64_t topk = 5;
  int64_t probes = 100;
  TraceEstimator trace_estimator = TraceEstimator::Hutchinson;
  int64_t batches = 1;
  EigMethod method = EigMethod::Lanczos;
  EigWhich which = EigWhich::LA;  // Lanczos; power iteration finds the largest magnitudes
  BlockEigs block_eigs = BlockEigs::Kinds;
  int64_t density_runs = 3, density_steps = 80;
  bool reorth = true;
  std::optional<double> tol;  // unset: Lanczos 1e-10, power iteration PyHessian's 1e-3
  double eig_tol() const { return tol ? *tol : method == EigMethod::Power ? 1e-3 : 1e-10; }
  std::optional<double> eig_accuracy;  // Lanczos: wanted relative eigenvalue accuracy instead of tol
  int64_t gn_samples = 1;
  bool keep_graphs = true;
  Curvature curvature = Curvature::Hessian;  // the matrix every estimator measures
  int64_t noise_batches = 8;                 // batch gradients for the gradient noise scale (0: skip, else >= 2)
};

// Per-parameter g-SNR averaged over the gradients of batches 0..batches-1 (1 = SGD-SaI's first step).
std::vector<double> gsnr_over_batches(const Context& c, int64_t batches);

struct BlockStats {
  std::string name;    // the tensor's name; a fused tensor's slices add [q], [k], [v]
  std::string tensor;  // the tensor's name
  BlockKind kind = BlockKind::Other;
  int64_t numel = 0;
  double trace = 0, trace_stderr = 0, avg_sharpness = 0, lambda_max = NAN, gsnr = 0, gn_diag_avg = NAN;
  NoiseScale noise;  // gradient noise scale (NaN when not measured)
};

struct KindStats {
  BlockKind kind = BlockKind::Other;
  int64_t numel = 0, n_tensors = 0;
  double trace = 0, trace_stderr = 0, avg_sharpness = 0, lambda_max = NAN;
  NoiseScale noise;  // from the kind's summed tr(Sigma) and |G|^2
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
  Curvature curvature = Curvature::Hessian;
  NoiseScale noise;                           // global gradient noise scale
  int64_t noise_batches = 0, noise_rows = 0;  // K and b of the noise scale (0: not measured)
};

Profile run_profile(const Context& c, const ProfileOptions& opt);
// With a set, the file is staged into it (renamed by OutputSet::commit with the configs).
void write_profile_h5(const std::string& path, const Profile& p, const Context& c, const ProfileOptions& opt,
                      OutputSet* set = nullptr);
void print_profile(const Profile& p, const Context& c);

}  // namespace bs
