// Gradient noise scale: per-entry Welford moments across batch gradients, summed per block.
#include "gradient_noise.h"

#include <cmath>
#include <limits>

#include "batch_loss.h"
#include "distributed.h"
#include "errors.h"

namespace bs {

void NoiseAccumulator::add(const torch::Tensor& g) {
  const auto x = g.detach().to(torch::kFloat64).reshape({-1});
  ++m_k;
  if (m_k == 1) {
    m_mean = x.clone();
    m_m2 = torch::zeros_like(x);
    return;
  }
  const auto d = x - m_mean;
  m_mean += d / static_cast<double>(m_k);
  m_m2 += d * (x - m_mean);
}

NoiseScale noise_scale(double sum_var, double sum_mean_sq, int64_t batches, int64_t rows) {
  NoiseScale n;
  n.tr_sigma = static_cast<double>(rows) * sum_var;
  n.g_sq = sum_mean_sq - sum_var / static_cast<double>(batches);
  n.b_simple = n.g_sq > 0 ? n.tr_sigma / n.g_sq : std::numeric_limits<double>::infinity();
  return n;
}

GradientNoise NoiseAccumulator::finish(const ParamTable& table, int64_t rows) const {
  if (m_k < 2) throw UserError("gradient noise: needs at least 2 batches (got " + std::to_string(m_k) + ")");
  GradientNoise out;
  out.batches = m_k;
  out.rows = rows;
  const auto var = m_m2 / static_cast<double>(m_k - 1);
  const auto msq = m_mean * m_mean;
  out.global = noise_scale(var.sum().item<double>(), msq.sum().item<double>(), m_k, rows);
  for (size_t i = 0; i < table.blocks().size(); ++i) {
    const auto& blk = table.blocks()[i];
    const auto& e = table.at(blk.entry);
    auto pick = [&](const torch::Tensor& t) {
      const auto part = t.narrow(0, e.offset, e.numel);
      return (blk.slice < 0 ? part : part.index_select(0, table.block_index(i))).sum().item<double>();
    };
    out.blocks.push_back(noise_scale(pick(var), pick(msq), m_k, rows));
  }
  return out;
}

GradientNoise gradient_noise(const Context& c, const ParamTable& table, const std::function<Batch(int64_t)>& batch_of,
                             int64_t batches) {
  if (batches < 2) throw UserError("gradient noise: batches must be at least 2 (got " + std::to_string(batches) + ")");
  auto params = c.net->parameters();
  NoiseAccumulator acc;
  int64_t rows = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const Batch batch = batch_of(b);
    rows = batch.inputs.size(0) * dist::world_size();
    auto loss = batch_loss(*c.net, batch, c.loss, c.data);
    auto grads = torch::autograd::grad({loss}, params, {}, false, false, true);
    dist::all_reduce_mean_buckets_(grads);
    std::vector<torch::Tensor> flat;
    for (size_t i = 0; i < params.size(); ++i)
      flat.push_back(grads[i].defined() ? grads[i].reshape({-1})
                                        : torch::zeros({params[i].numel()}, params[i].options()));
    acc.add(torch::cat(flat));
  }
  return acc.finish(table, rows);
}

}  // namespace bs
