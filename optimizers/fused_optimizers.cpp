// The fused optimizers: one pass over each tensor applying the update functor (update_functors.h)
// through the CPU loop; the CUDA kernels (cuda/) apply the same functors on the device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "cpu_loop.h"
#include "dtype_words.h"
#include "errors.h"
#include "fused_base.h"
#include "gsnr.h"
#include "optimizer.h"
#include "registry.h"
#include "update_functors.h"

namespace bs {

std::vector<double> per_param_decay(const OptimizerInputs& in, const OptimizerOptions& opt) {
  if (!in.weight_decay.empty() && in.weight_decay.size() != in.names.size())
    throw UserError("optimizer: " + std::to_string(in.weight_decay.size()) + " weight decays for " +
                    std::to_string(in.names.size()) + " tensors");
  std::vector<double> wd =
      in.weight_decay.empty() ? std::vector<double>(in.names.size(), opt.weight_decay) : in.weight_decay;
  for (size_t i = 0; i < in.names.size(); ++i)
    for (const auto& pat : in.no_decay)
      if (!pat.empty() && in.names[i].find(pat) != std::string::npos) wd[i] = 0.0;
  return wd;
}

void validate(const OptimizerOptions& o) {
  if (!(std::isfinite(o.lr) && o.lr > 0)) throw UserError(param("lr") + " must be a positive finite number");
  if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0)) throw UserError(param("weight_decay") + " must be >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw UserError(param("beta1") + " must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw UserError(param("beta2") + " must be in [0, 1)");
  if (!(std::isfinite(o.eps) && o.eps > 0)) throw UserError(param("eps") + " must be positive");
}

namespace {

// The edge-of-stability threshold of an update whose momentum is an exponential average with beta1
// (m = beta1 m + (1 - beta1) g): (2 + 2 beta1) / (1 - beta1); 2 without momentum.
double ema_threshold(double beta1) { return (2 + 2 * beta1) / (1 - beta1); }

// Adam's step size from a second moment v (per element or per block): lr / (sqrt(v / bc2) + eps), in float64.
torch::Tensor adam_step_size(const torch::Tensor& v, double lr, double bc2, double eps) {
  return lr / ((v.to(torch::kFloat64) / bc2).sqrt() + eps);
}

// One value per block of `b` (h [n_blocks]) spread over the tensor's coordinates, as the update visits them.
torch::Tensor expand_blocks(const ParamBlock& b, const torch::Tensor& h, int64_t numel) {
  if (b.regions.empty()) return h.repeat_interleave(b.block_size);
  auto out = torch::empty({numel}, torch::kFloat64);
  double* o = out.data_ptr<double>();
  const auto hc = h.contiguous();
  const double* hp = hc.data_ptr<double>();
  int64_t base = 0;
  for (const BlockRegion& r : b.regions) {
    for (int64_t k = 0; k < r.count; ++k) {
      const int64_t start = r.offset + k * r.step;
      for (int64_t q = 0; q < r.runs; ++q)
        for (int64_t e = 0; e < r.run; ++e) o[start + q * r.stride + e] = hp[base + k];
    }
    base += r.count;
  }
  return out;
}

class FusedAdamW : public FusedBase {
 public:
  FusedAdamW(const OptimizerInputs& in, const OptimizerOptions& o) : FusedBase(in, o, {"exp_avg", "exp_avg_sq"}) {}
  std::string name() const override { return "adamw"; }
  // eta_i / (sqrt(v / (1 - beta2^t)) + eps), as AdamWUpdate divides.
  std::optional<StepSizes> step_sizes() const override {
    StepSizes s{{}, ema_threshold(m_o.beta1)};
    if (m_state.empty() || m_step == 0) return s;
    const double bc2 = 1 - std::pow(m_o.beta2, m_step);
    for (size_t i = 0; i < m_params.size(); ++i)
      s.per_tensor.push_back(adam_step_size(m_state[i][1], m_lr[i], bc2, m_o.eps));
    return s;
  }

 protected:
  std::vector<int64_t> state_numels(size_t i) const override { return {m_params[i].numel(), m_params[i].numel()}; }
  BS_DISPATCH_UPDATE
  template <class T>
  TensorJob run(size_t i, const torch::Tensor& g) {
    const double lr = m_lr[i], bc1 = 1 - std::pow(m_o.beta1, m_step), bc2 = 1 - std::pow(m_o.beta2, m_step);
    const AdamWUpdate<T> f{T(1 - lr * m_wd[i]), T(m_o.beta1),          T(1 - m_o.beta1), T(m_o.beta2),
                           T(1 - m_o.beta2),    T(1 / std::sqrt(bc2)), T(m_o.eps),       T(lr / bc1)};
    return elements_job<2, T>(i, g, f);
  }
};

class AdamMini : public FusedBase {
 public:
  AdamMini(const OptimizerInputs& in, const OptimizerOptions& o)
      : FusedBase(in, o, {"exp_avg", "v_block"}), m_part(in.partition) {
    if (m_part.params.size() != m_params.size()) throw UserError("adam-mini: the partition does not match the model");
    for (size_t i = 0; i < m_params.size(); ++i) {
      const ParamBlock& b = m_part.params[i];
      int64_t covered = b.block_size * b.n_blocks;
      if (!b.regions.empty()) {
        covered = 0;
        for (const auto& r : b.regions) covered += r.count * r.block_numel();
      }
      if (covered != m_params[i].numel())
        throw UserError("adam-mini: the partition's blocks of '" + m_names[i] + "' do not cover the tensor");
      // Sliced: all regions blocks of whole rows ([3d, in]), or all blocks of columns of the same rows
      // ([in, 3d]); each region's blocks one after another (step = run).
      const bool rows_layout = !b.regions.empty() && b.regions[0].stride == 0;
      for (const auto& r : b.regions) {
        const bool ok = r.step == r.run && r.run > 0 &&
                        (rows_layout ? r.stride == 0 && r.runs == 1
                                     : b.shape.size() == 2 && r.runs == b.shape[0] && r.stride == b.shape[1]);
        if (!ok)
          throw UserError("adam-mini: the slices of '" + m_names[i] +
                          "' are neither all blocks of whole rows nor all blocks of columns of every row");
      }
    }
  }
  std::string name() const override { return "adam-mini"; }
  // eta_i / (sqrt(v_block / (1 - beta2^t)) + eps) on every coordinate of the block.
  std::optional<StepSizes> step_sizes() const override {
    StepSizes s{{}, ema_threshold(m_o.beta1)};
    if (m_state.empty() || m_step == 0) return s;
    const double bc2 = 1 - std::pow(m_o.beta2, m_step);
    for (size_t i = 0; i < m_params.size(); ++i) {
      const auto h = adam_step_size(m_state[i][1], m_lr[i], bc2, m_o.eps);
      s.per_tensor.push_back(expand_blocks(m_part.params[i], h, m_params[i].numel()));
    }
    return s;
  }

 protected:
  std::vector<int64_t> state_numels(size_t i) const override {
    return {m_params[i].numel(), m_part.params[i].n_blocks};
  }
  BS_DISPATCH_UPDATE
  template <class T>
  TensorJob run(size_t i, const torch::Tensor& g) {
    const double lr = m_lr[i], bc1 = 1 - std::pow(m_o.beta1, m_step), bc2 = 1 - std::pow(m_o.beta2, m_step);
    const double wd = m_part.params[i].weight_decay ? m_wd[i] : 0.0;
    const AdamMiniUpdate<T> f{T(1 - lr * wd), T(m_o.beta1), T(1 - m_o.beta1), T(lr / bc1)};
    const T beta2 = T(m_o.beta2), one_minus_beta2 = T(1 - m_o.beta2), inv_sqrt_bc2 = T(1 / std::sqrt(bc2)),
            eps = T(m_o.eps);
    const int64_t bs = m_part.params[i].block_size, nb = m_part.params[i].n_blocks;
    T* p = m_params[i].data_ptr<T>();
    const T* gp = g.data_ptr<T>();
    T* m = m_state[i][0].data_ptr<T>();
    T* vb = m_state[i][1].data_ptr<T>();
    // A block's second moment from the mean of g^2 over it, and the 1/h its elements are scaled by.
    auto update_v = [=](T& v, T mean_sq) {
      v = v * beta2 + mean_sq * one_minus_beta2;
      return T(1) / (std::sqrt(v) * inv_sqrt_bc2 + eps);
    };
    const ParamBlock& pb = m_part.params[i];
    if (!pb.regions.empty() && pb.regions[0].stride == 0) {  // [3d, in] slices: equal blocks of whole rows
      int64_t base = 0;
      for (const BlockRegion& r : pb.regions) {
        T* const v = vb + base;
        const int64_t offset = r.offset, run = r.run;
        base += r.count;
        at::parallel_for(0, r.count, 1, [&](int64_t s, int64_t e) {
          block_runs(
              [=](int64_t b, T sq) {
                const int64_t off = offset + b * run;
                const T inv_h = update_v(v[b], sq / T(run));
                return [=](int64_t k) { f(p[off + k], gp[off + k], m[off + k], inv_h); };
              },
              gp + offset, std::array<const T*, 2>{p + offset, m + offset}, run, s, e);
        });
      }
      return {};
    }
    if (!pb.regions.empty()) return column_blocks_job(pb, p, gp, m, vb, f, update_v);
    if (bs == 1)  // a block per element (Adam-mini's biases): mean(g^2) = g * g, one vectorized pass
      return elementwise_job(nb, [=](int64_t k) { f(p[k], gp[k], m[k], update_v(vb[k], gp[k] * gp[k])); });
    // Threads take whole blocks (run_jobs' units), unless the tensor is one large block: then its sum
    // and update are split across the threads, here. The choice depends on the partition only, and a
    // block's sum has the same bits whichever pass takes it, so the bits do not depend on the thread count.
    if (bs >= kGrain && nb == 1) {  // one large block: parallel reduction, then parallel update
      const T inv_h = update_v(vb[0], parallel_sum_squares(gp, bs) / T(bs));
      parallel_elements(bs, [=](int64_t k) { f(p[k], gp[k], m[k], inv_h); });
      return {};
    }
    // Threads take runs of whole blocks; block_runs (cpu_loop.h) streams each run in one pass.
    return {nb, bs, [=](int64_t s, int64_t e) {
              block_runs(
                  [=](int64_t b, T sq) {
                    const int64_t off = b * bs;
                    const T inv_h = update_v(vb[b], sq / T(bs));
                    return [=](int64_t k) { f(p[off + k], gp[off + k], m[off + k], inv_h); };
                  },
                  gp, std::array<const T*, 2>{p, m}, bs, s, e);
            }};
  }

  // Conv1D [in, 3d] slices (HF GPT-2's c_attn): a block is `run` columns of every row. Block by block,
  // every element is a cache line of its own (15-19x slower on GPT-2-small's c_attn), so the sums are
  // taken row after row: a block's sum is each row's run summed with sum_squares, added in row order
  // (the bits of the block summed alone; one value's sum_squares is its square, exactly). Split into
  // bands of columns on two threads, each reading halves of the same rows, the sums ran slower than on
  // one (0.62 against 0.37 ms for a 768 x 2304 tensor), so the tensor is one unit of run_jobs' region:
  // its thread takes the sums, gives each block's 1/h to its columns, and updates the rows in bands of
  // 64 from the last, so that the update starts on the rows the sums read last, still in the core's
  // cache. g is read twice, the second time partly from cache: in a harness on bench optim --fused-qkv's
  // set an Adam-mini step ran 1.4-2 % faster than with every such tensor's sums taken first, side by
  // side, and its rows updated in the region with the other tensors' (paired medians over 24-40 steps,
  // 1 and 2 threads; in bench optim itself 4 % at 1 thread and no clear change at 2, README).
  template <class T, class F, class U>
  TensorJob column_blocks_job(const ParamBlock& pb, T* p, const T* gp, T* m, T* vb, const F& f, const U& update_v) {
    const int64_t rows = pb.regions[0].runs, cols = pb.regions[0].stride, n_blocks = pb.n_blocks;
    const std::vector<BlockRegion> regions = pb.regions;
    return {1, rows * cols, [=](int64_t, int64_t) {
              std::vector<T> sq(static_cast<size_t>(n_blocks), T(0));
              for (int64_t q = 0; q < rows; ++q) {
                T* acc = sq.data();
                for (const BlockRegion& r : regions) {
                  const T* x = gp + q * cols + r.offset;
                  const int64_t run = r.run;
                  if (run == 1) {
                    elements([=](int64_t b) { acc[b] += x[b] * x[b]; }, 0, r.count);
                  } else {
                    elements([=](int64_t b) { acc[b] += sum_squares_inline(x + b * run, run); }, 0, r.count);
                  }
                  acc += r.count;
                }
              }
              std::vector<T> col_inv_h(static_cast<size_t>(cols));
              int64_t v = 0;
              for (const BlockRegion& r : regions)
                for (int64_t b = 0; b < r.count; ++b, ++v) {
                  const T inv_h = update_v(vb[v], sq[static_cast<size_t>(v)] / T(r.block_numel()));
                  std::fill(col_inv_h.begin() + r.offset + b * r.run, col_inv_h.begin() + r.offset + (b + 1) * r.run,
                            inv_h);
                }
              const T* ih = col_inv_h.data();
              for (int64_t e = rows; e > 0; e -= 64) {
                const int64_t s = std::max<int64_t>(0, e - 64), half = (e - s) / 2;
                // Rows q and q + half stepped together (two_way_body's reason: more streams in flight).
                for (int64_t q = s; q < s + half; ++q) {
                  const int64_t o0 = q * cols, o1 = (q + half) * cols;
                  two_streams([=](int64_t c) { f(p[o0 + c], gp[o0 + c], m[o0 + c], ih[c]); },
                              [=](int64_t c) { f(p[o1 + c], gp[o1 + c], m[o1 + c], ih[c]); }, cols);
                }
                for (int64_t q = s + 2 * half; q < e; ++q) {
                  const int64_t o = q * cols;
                  elements([=](int64_t c) { f(p[o + c], gp[o + c], m[o + c], ih[c]); }, 0, cols);
                }
              }
            }};
  }

 private:
  Partition m_part;
};

class SgdSai : public FusedBase {
 public:
  SgdSai(const OptimizerInputs& in, const OptimizerOptions& o)
      : FusedBase(in, o, {"momentum_buffer", "gsnr"}), m_config_gsnr(in.gsnr) {
    if (!m_config_gsnr.empty() && m_config_gsnr.size() != m_params.size())
      throw UserError("sgd-sai: the g-SNR config does not match the model");
    if (o.beta1 <= 0) throw UserError(param("beta1") + " (momentum) must be > 0 for sgd-sai, as in the official code");
  }
  std::string name() const override { return "sgd-sai"; }
  // eta_i * gsnr_i on every coordinate of the tensor (SgdSaiUpdate's step).
  std::optional<StepSizes> step_sizes() const override {
    StepSizes s{{}, ema_threshold(m_o.beta1)};
    if (m_state.empty() || m_step == 0) return s;
    for (size_t i = 0; i < m_params.size(); ++i)
      s.per_tensor.push_back(
          torch::full({m_params[i].numel()}, m_lr[i] * m_state[i][1].item<double>(), torch::kFloat64));
    return s;
  }

 protected:
  std::vector<int64_t> state_numels(size_t i) const override { return {m_params[i].numel(), 1}; }
  BS_DISPATCH_UPDATE
  template <class T>
  TensorJob run(size_t i, const torch::Tensor& g) {
    T* gsnr = m_state[i][1].data_ptr<T>();
    if (m_step == 1) {  // official warmup_step: g-SNR of the first gradient, fixed afterwards
      if (!m_config_gsnr.empty()) {
        gsnr[0] = T(m_config_gsnr[i]);
      } else {
        gsnr[0] = T(bs::gsnr(g, m_o.eps));
      }
    }
    const double lr = m_lr[i];
    const SgdSaiUpdate<T> f{T(1 - lr * m_wd[i]), T(m_o.beta1), T(1 - m_o.beta1), T(lr * static_cast<double>(gsnr[0])),
                            m_step == 1};
    return elements_job<1, T>(i, g, f, Ways::two);
  }

 private:
  std::vector<double> m_config_gsnr;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const OptimizerInputs& in, const OptimizerOptions& o) {
  return std::make_unique<FusedAdamW>(in, o);
}
std::unique_ptr<Optimizer> make_adam_mini(const OptimizerInputs& in, const OptimizerOptions& o) {
  return std::make_unique<AdamMini>(in, o);
}
std::unique_ptr<Optimizer> make_sgd_sai(const OptimizerInputs& in, const OptimizerOptions& o) {
  return std::make_unique<SgdSai>(in, o);
}

OptimizerOptions default_options(const std::string& optimizer) { return find_optimizer(optimizer).defaults; }

std::vector<std::string> optimizer_names() {
  std::vector<std::string> names;
  for (const auto& e : optimizer_registry()) names.push_back(e.name);
  return names;
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, const OptimizerInputs& in,
                                          const OptimizerOptions& o) {
  const OptimizerEntry& entry = find_optimizer(name);
  validate(o);
  if (in.names.size() != in.params.size()) throw UserError("optimizer: one name per parameter is required");
  if (entry.cpu_only)
    for (size_t i = 0; i < in.params.size(); ++i) {
      const torch::Tensor& p = in.params[i];
      if (!p.defined()) continue;
      if (!p.device().is_cpu())
        throw UserError("optimizer '" + name + "': parameter '" + in.names[i] + "' is on " + p.device().str() +
                        "; this build steps CPU tensors (the CUDA kernels are compiled, not dispatched): use "
                        "torch-adamw or CPU parameters");
      // The fused loops are compiled for these two (a bfloat16 model used to fail at its first step
      // with LibTorch's dispatch message).
      if (p.scalar_type() != torch::kFloat32 && p.scalar_type() != torch::kFloat64)
        throw UserError("optimizer '" + name + "': parameter '" + in.names[i] + "' is " + dtype_name(p.scalar_type()) +
                        "; it steps float32 and float64 parameters (keep float32 master weights, as mixed-precision "
                        "training does)");
    }
  return entry.make(in, o);
}

}  // namespace bs
