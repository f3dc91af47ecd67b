// Double-backprop HVP: Hv = d/dw (g(w) . v), with g built with create_graph=true once per batch.
#include "hvp_operator.h"

#include <ATen/VmapMode.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "distributed.h"
#include "errors.h"
#include "batch_loss.h"

namespace bs {

torch::Tensor rademacher(int64_t n, std::mt19937_64& rng, torch::Dtype dtype) {
  auto t = torch::empty({n}, torch::kFloat64);
  double* p = t.data_ptr<double>();
  for (int64_t i = 0; i < n; i += 64) {
    uint64_t bits = rng();
    for (int64_t j = i; j < std::min(n, i + 64); ++j, bits >>= 1) p[j] = (bits & 1) ? 1.0 : -1.0;
  }
  return t.to(dtype);
}

torch::Tensor gaussian(int64_t n, std::mt19937_64& rng, torch::Dtype dtype) {
  auto t = torch::empty({n}, torch::kFloat64);
  std::normal_distribution<double> normal;
  double* p = t.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = normal(rng);
  return t.to(dtype);
}

const char* curvature_noun(Curvature c) {
  switch (c) {
    case Curvature::Hessian:
      return "Hessian";
    case Curvature::Ggn:
      return "GGN";
    case Curvature::Fisher:
      return "Fisher";
    case Curvature::EmpiricalFisher:
      return "empirical-Fisher";
  }
  return "?";
}

namespace {
// A row is a vector of the outputs' last dimension; outputs [B] are B rows of one value.
int64_t row_width(const torch::Tensor& z) { return z.dim() <= 1 ? 1 : z.size(-1); }

// One reduction instead of isfinite's four passes: a sum is finite only if every term is; a finite
// sum can still overflow, so only a non-finite sum is checked element by element.
bool all_finite(const torch::Tensor& t) {
  return std::isfinite(t.sum().item<double>()) || torch::isfinite(t).all().item<bool>();
}

// A vmap level for the scope: tensors given a batch dimension at it (at::_add_batch_dim) flow through
// autograd's backward as single logical tensors.
struct VmapLevel {
  const int64_t level = at::impl::VmapMode::increment_nesting();
  ~VmapLevel() { at::impl::VmapMode::decrement_nesting(); }
};
}  // namespace

HvpOperator::HvpOperator(Network& net, std::vector<Batch> batches, LossKind loss, std::string data_name,
                         OperatorOptions o)
    : m_net(net),
      m_batches(std::move(batches)),
      m_loss_kind(loss),
      m_data_name(std::move(data_name)),
      m_o(o),
      m_table(net.named_parameters()),
      m_params(net.parameters()),
      m_dtype(net.dtype()) {
  if (m_batches.empty()) throw UserError(param("batches") + " must be at least 1");
  for (auto& p : m_params) p.requires_grad_(true);
  for (size_t i = 0; i < m_params.size(); ++i) m_all.push_back(i);
  m_grad = torch::zeros({size()}, m_dtype);
  auto losses = torch::empty({static_cast<int64_t>(m_batches.size())}, torch::kFloat64);
  for (size_t b = 0; b < m_batches.size(); ++b) {
    Graph g = build(b);
    std::vector<torch::Tensor> flat;
    for (size_t i = 0; i < m_params.size(); ++i)
      flat.push_back(g.grads[i].defined() ? g.grads[i].detach().reshape({-1})
                                          : torch::zeros({m_params[i].numel()}, m_dtype));
    auto gflat = torch::cat(flat);
    if (b == 0) m_grad0 = gflat;
    m_grad += gflat / static_cast<double>(m_batches.size());
    losses[static_cast<int64_t>(b)] = g.loss.item<double>();
    if (m_o.keep_graphs) m_graphs.push_back(std::move(g));
  }
  // Data parallel: every rank holds an equal share of each batch, so the means over ranks are the
  // gradient and loss of the whole batch (and below, of every product).
  dist::all_reduce_mean_(m_grad);
  dist::all_reduce_mean_(m_grad0);
  dist::all_reduce_mean_(losses);
  for (size_t b = 0; b < m_batches.size(); ++b) {
    const double l = losses[static_cast<int64_t>(b)].item<double>();
    if (!std::isfinite(l))
      throw UserError("non-finite loss on batch " + std::to_string(b) + " of " + param("data") + " '" + m_data_name +
                      "'");
    m_loss += l / static_cast<double>(m_batches.size());
  }
}

HvpOperator::Graph HvpOperator::build(size_t b) const {
  Graph g;
  if (m_o.curvature != Curvature::Hessian) {
    build_output_space(g, b);
    return g;
  }
  g.loss = batch_loss(m_net, m_batches[b], m_loss_kind, m_data_name);
  g.grads = torch::autograd::grad({g.loss}, m_params, {}, /*retain_graph=*/true, /*create_graph=*/true,
                                  /*allow_unused=*/true);
  return g;
}

void HvpOperator::build_output_space(Graph& g, size_t b) const {
  const Batch& batch = m_batches[b];
  g.outputs = batch_outputs(m_net, batch, m_data_name);
  g.loss = compute_loss(g.outputs, batch.targets, m_loss_kind);  // validates the shapes, too
  g.grads = torch::autograd::grad({g.loss}, m_params, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                  /*allow_unused=*/true);
  g.u = torch::zeros_like(g.outputs).requires_grad_(true);
  g.jtu = torch::autograd::grad({g.outputs}, m_params, {g.u}, /*retain_graph=*/true, /*create_graph=*/true,
                                /*allow_unused=*/true);
  const bool ce = m_loss_kind == LossKind::CrossEntropy;
  const int64_t D = row_width(g.outputs);
  const int64_t N = g.outputs.numel() / std::max<int64_t>(D, 1);
  const auto z = g.outputs.detach().reshape({N, D});
  const auto p = ce ? torch::softmax(z, -1) : torch::Tensor();
  g.scale = 1.0 / static_cast<double>(N);
  if (m_o.curvature == Curvature::Ggn) {
    if (ce)
      g.rows = p;
    else
      g.scale *= 2.0 / static_cast<double>(D);
    return;
  }
  if (m_o.curvature == Curvature::EmpiricalFisher) {
    const auto t = batch.targets;
    g.rows = ce ? p - torch::one_hot(t.reshape({-1}), D).to(p.scalar_type())
                : (z - t.reshape({N, D}).to(z.scalar_type())) * (2.0 / static_cast<double>(D));
    return;
  }
  // Fisher: one label per row from the model's own distribution, from a stream fixed by (seed, batch)
  // so that rebuilt graphs (keep_graphs=false) and reruns draw the same labels.
  std::seed_seq seq{static_cast<uint32_t>(m_o.seed), static_cast<uint32_t>(m_o.seed >> 32), static_cast<uint32_t>(b),
                    0x46495348u};
  std::mt19937_64 rng(seq);
  if (ce) {
    std::uniform_real_distribution<double> uniform;
    auto u = torch::empty({N, 1}, torch::kFloat64);
    double* pu = u.data_ptr<double>();
    for (int64_t i = 0; i < N; ++i) pu[i] = uniform(rng);
    const auto cdf = p.to(torch::kFloat64).cumsum(-1).contiguous();
    auto y = torch::searchsorted(cdf, u.to(cdf.device())).clamp_max(D - 1).reshape({-1});
    g.rows = p - torch::one_hot(y, D).to(p.scalar_type());
  } else {
    // y = z + sqrt(D/2) e gives s = (2/D)(z - y) = -sqrt(2/D) e.
    g.rows = (gaussian(N * D, rng, z.scalar_type()) * -std::sqrt(2.0 / static_cast<double>(D)))
                 .reshape({N, D})
                 .to(z.device());
  }
}

// M (J v) row by row, scaled by 1/N: the output-space factor of J^T M J.
torch::Tensor HvpOperator::output_space(const Graph& g, const torch::Tensor& jv) const {
  const auto w = jv.reshape({-1, row_width(g.outputs)});
  torch::Tensor c;
  if (m_o.curvature == Curvature::Ggn && m_loss_kind == LossKind::CrossEntropy)
    c = g.rows * w - g.rows * (g.rows * w).sum(-1, true);
  else if (m_o.curvature == Curvature::Ggn)
    c = w;
  else
    c = g.rows * (g.rows * w).sum(-1, true);
  return (c * g.scale).reshape(g.outputs.sizes());
}

int64_t HvpOperator::block_size(const std::vector<size_t>& block) const {
  int64_t n = 0;
  for (size_t i : block) n += m_table.at(i).numel;
  return n;
}

// The Hessian: d(g . v)/dw with g the gradient built with create_graph. The others: J_b v_b from the
// double backward of J^T u (d(J^T u . v)/du), the output-space factor M, then the vector-Jacobian product
// J_b^T (M J_b v_b) onto the block's parameters.
torch::Tensor HvpOperator::product(const Graph& g, const std::vector<size_t>& block, const torch::Tensor& v_b) const {
  const bool hessian = m_o.curvature == Curvature::Hessian;
  const std::vector<torch::Tensor>& first = hessian ? g.grads : g.jtu;  // differentiated against v
  const bool rows = v_b.dim() == 2;                                     // several directions, one pass
  const int64_t m = rows ? v_b.size(0) : 1;
  std::optional<VmapLevel> vmap;
  if (rows) vmap.emplace();
  auto shaped = [&](std::vector<int64_t> shape) {
    if (rows) shape.insert(shape.begin(), m);
    return shape;
  };
  std::vector<torch::Tensor> outs, ins, vs;
  std::vector<size_t> used;
  int64_t off = 0;
  for (size_t i : block) {
    const auto& e = m_table.at(i);
    if (first[i].defined() && first[i].requires_grad()) {
      outs.push_back(first[i]);
      ins.push_back(m_params[i]);
      const auto part = v_b.narrow(-1, off, e.numel).reshape(shaped(e.shape));
      vs.push_back(rows ? at::_add_batch_dim(part, 0, vmap->level) : part);
      used.push_back(i);
    }
    off += e.numel;
  }
  if (outs.empty()) return torch::zeros(shaped({off}), m_dtype);  // no (or a constant) gradient: a zero block
  std::vector<torch::Tensor> hv;
  if (hessian) {
    hv = torch::autograd::grad(outs, ins, vs, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
  } else {
    const auto jv = torch::autograd::grad(outs, {g.u}, vs, /*retain_graph=*/true, /*create_graph=*/false,
                                          /*allow_unused=*/true)[0];
    if (!jv.defined()) return torch::zeros(shaped({off}), m_dtype);
    hv = torch::autograd::grad({g.outputs}, ins, {output_space(g, jv)}, /*retain_graph=*/true,
                               /*create_graph=*/false, /*allow_unused=*/true);
  }
  std::vector<torch::Tensor> pieces;  // concatenated: each entry written once
  size_t u = 0;
  for (size_t i : block) {
    const auto& e = m_table.at(i);
    const bool has = u < used.size() && used[u] == i;
    if (has && hv[u].defined()) {
      const auto h = rows ? at::_remove_batch_dim(hv[u], vmap->level, m, 0) : hv[u];
      pieces.push_back(h.reshape(shaped({e.numel})));
    } else {
      pieces.push_back(torch::zeros(shaped({e.numel}), m_dtype));
    }
    if (has) ++u;
  }
  return torch::cat(pieces, -1);
}

torch::Tensor HvpOperator::apply_block(const std::vector<size_t>& block, const torch::Tensor& v_in) {
  auto v = v_in.to(m_dtype).contiguous();
  torch::Tensor sum;
  int64_t bad = -1;
  for (size_t b = 0; b < m_batches.size(); ++b) {
    torch::Tensor hv = m_o.keep_graphs ? product(m_graphs[b], block, v) : product(build(b), block, v);
    if (bad < 0 && !all_finite(hv)) bad = static_cast<int64_t>(b);
    sum = sum.defined() ? sum + hv : hv;
  }
  m_n_hvp += v.dim() == 2 ? v.size(0) : 1;
  if (m_batches.size() > 1) sum = sum / static_cast<double>(m_batches.size());
  dist::all_reduce_mean_(sum);  // a NaN on any rank reaches every rank, so all stop together
  if (bad >= 0 || (dist::active() && !all_finite(sum)))
    throw UserError(std::string("non-finite ") + curvature_noun(m_o.curvature) + "-vector product on " +
                    (bad >= 0 ? "batch " + std::to_string(bad) : std::string("another rank's share of a batch")) +
                    " of " + param("data") + " '" + m_data_name + "'");
  return sum;
}

torch::Tensor HvpOperator::apply(const torch::Tensor& v) { return apply_block(m_all, v); }

LinearOp HvpOperator::table_block_op(const std::vector<size_t>& blocks, int64_t* n) {
  std::vector<size_t> tensors;
  bool whole = true;
  for (size_t b : blocks) {
    const auto& blk = m_table.blocks().at(b);
    whole = whole && blk.slice < 0;
    if (std::find(tensors.begin(), tensors.end(), blk.entry) == tensors.end()) tensors.push_back(blk.entry);
  }
  if (whole) {
    std::vector<size_t> in_order;  // the blocks' own order
    for (size_t b : blocks) in_order.push_back(m_table.blocks()[b].entry);
    *n = block_size(in_order);
    return block_op(in_order);
  }
  // Positions of the blocks' coordinates inside the concatenation of their tensors.
  std::vector<torch::Tensor> pos;
  for (size_t b : blocks) {
    const auto& blk = m_table.blocks()[b];
    int64_t base = 0;
    for (size_t t : tensors) {
      if (t == blk.entry) break;
      base += m_table.at(t).numel;
    }
    pos.push_back(m_table.block_index(b) + base);
  }
  auto idx = torch::cat(pos);
  *n = idx.numel();
  const int64_t full = block_size(tensors);
  return [this, tensors, idx, full](const torch::Tensor& v) {
    auto x = torch::zeros({full}, v.options()).index_copy_(0, idx, v);
    return apply_block(tensors, x).index_select(0, idx);
  };
}

double directional_sharpness(HvpOperator& H, const torch::Tensor& u) {
  const auto ud = u.to(torch::kFloat64);
  const double nn = ud.dot(ud).item<double>();
  if (!(nn > 0)) throw UserError("directional sharpness: the update direction is zero");
  return ud.dot(H.apply(u).to(torch::kFloat64)).item<double>() / nn;
}

}  // namespace bs
