// HvpOperator: Hessian-vector products of the loss on a fixed set of batches by double backprop
// (Pearlmutter 1994), the gradient graph built once and reused; counts products like Spectra counts
// operations. A block view gives H_bb v_b for a subset of parameter tensors. Under data parallelism
// (dist::active) each rank holds its share of every batch and products and gradients are all-reduced.
#pragma once
#include <functional>
#include <random>

#include "data.h"
#include "loss.h"
#include "network.h"
#include "param_table.h"

namespace bs {

// y = A x on flat vectors; what the eigensolvers, trace and density estimators consume.
using LinearOp = std::function<torch::Tensor(const torch::Tensor&)>;

class HvpOperator {
 public:
  // keep_graphs=false rebuilds each batch's graph inside every product, holding one at a time.
  HvpOperator(Network& net, std::vector<Batch> batches, LossKind loss, std::string data_name, bool keep_graphs = true);

  const ParamTable& table() const { return m_table; }
  int64_t size() const { return m_table.total_numel(); }
  torch::Dtype dtype() const { return m_dtype; }
  int64_t n_hvp() const { return m_n_hvp; }
  double loss() const { return m_loss; }
  const torch::Tensor& gradient() const { return m_grad; }               // flat, mean over batches
  const torch::Tensor& first_batch_gradient() const { return m_grad0; }  // flat, batch 0 only

  torch::Tensor apply(const torch::Tensor& v);  // H v, flat in, flat out (operator dtype)
  // H_bb v_b for the parameter tensors `block` (indices into table()); v_b is their concatenation.
  // A matrix v_b [m, n_b] holds m directions as rows: all m products in one pass through the graph,
  // the directions a batch dimension (LibTorch's vmap); rows out, m products counted.
  torch::Tensor apply_block(const std::vector<size_t>& block, const torch::Tensor& v_b);
  int64_t block_size(const std::vector<size_t>& block) const;
  LinearOp as_op() {
    return [this](const torch::Tensor& v) { return apply(v); };
  }
  LinearOp block_op(std::vector<size_t> block) {
    return [this, block](const torch::Tensor& v) { return apply_block(block, v); };
  }
  // H restricted to ParamTable blocks (indices into table().blocks(): whole tensors or fused tensors'
  // slices), acting on the concatenation of their coordinates; *n receives that dimension. Whole
  // tensors alone are block_op of those tensors; a slice goes through its tensor's block.
  LinearOp table_block_op(const std::vector<size_t>& blocks, int64_t* n);

 private:
  struct Graph {
    torch::Tensor loss;
    std::vector<torch::Tensor> grads;  // create_graph=true; undefined where a parameter gets no gradient
  };
  Graph build(size_t batch) const;
  torch::Tensor product(const Graph& g, const std::vector<size_t>& block, const torch::Tensor& v_b) const;

  Network& m_net;
  std::vector<Batch> m_batches;
  LossKind m_loss_kind;
  std::string m_data_name;
  bool m_keep;
  ParamTable m_table;
  std::vector<torch::Tensor> m_params;
  std::vector<Graph> m_graphs;
  std::vector<size_t> m_all;
  torch::Dtype m_dtype;
  torch::Tensor m_grad, m_grad0;
  double m_loss = 0;
  int64_t m_n_hvp = 0;
};

// Directional sharpness of an update direction u (Pan & Li 2023): u^T H u / ||u||^2, one product.
double directional_sharpness(HvpOperator& H, const torch::Tensor& u);

// Random probe vectors from a seeded std::mt19937_64 (independent of LibTorch's global generator).
torch::Tensor rademacher(int64_t n, std::mt19937_64& rng, torch::Dtype dtype);
torch::Tensor gaussian(int64_t n, std::mt19937_64& rng, torch::Dtype dtype);

}  // namespace bs
