// HvpOperator: curvature-vector products of the loss on a fixed set of batches, the graphs built once
// and reused; counts products like Spectra counts operations. The curvature is the Hessian by double
// backprop (Pearlmutter 1994), or one of the positive semi-definite matrices optimizers use:
// the generalised Gauss-Newton J^T H_L J, the Fisher J^T (s s^T) J with labels sampled from the model,
// or the empirical Fisher with the true labels (J the outputs' Jacobian, H_L the loss's Hessian in
// output space, s the gradient of one row's loss in output space; Martens 2020, curvlinops). A block view gives H_bb
// v_b for a subset of parameter tensors. Under data parallelism (dist::active) each rank holds its share of every batch
// and products and gradients are all-reduced.
#pragma once
#include <functional>
#include <random>

#include "data.h"
#include "loss.h"
#include "network.h"
#include "param_table.h"

namespace bs {

// Which matrix the operator multiplies by. A "row" is one vector of the outputs' last dimension: a
// token's logits (cross-entropy) or one example's predictions (MSE); the loss is the mean of the rows'
// losses l_n, and every matrix is (1/N) sum_n J_n^T M_n J_n with M_n:
//   ggn:              d^2 l_n / dz^2 (cross-entropy diag(p) - p p^T; MSE (2/D) I);
//   fisher:           s s^T, s = dl_n/dz at a label drawn from the model (softmax sample; for MSE
//                     z + N(0, D/2)), one draw per row, seeded: E[M_n] = the GGN's;
//   empirical-fisher: s s^T at the true label.
enum class Curvature { Hessian, Ggn, Fisher, EmpiricalFisher };
inline const Words<Curvature>& curvature_words() {
  static const Words<Curvature> w{{"hessian", Curvature::Hessian},
                                  {"ggn", Curvature::Ggn},
                                  {"fisher", Curvature::Fisher},
                                  {"empirical-fisher", Curvature::EmpiricalFisher}};
  return w;
}

const char* curvature_noun(Curvature c);  // "Hessian", "GGN", "Fisher", "empirical-Fisher" (messages)

struct OperatorOptions {
  Curvature curvature = Curvature::Hessian;
  uint64_t seed = 0;        // the Fisher's label draws (batch b: its own stream from seed and b)
  bool keep_graphs = true;  // false rebuilds each batch's graph inside every product, holding one at a time
};

// y = A x on flat vectors; what the eigensolvers, trace and density estimators consume.
using LinearOp = std::function<torch::Tensor(const torch::Tensor&)>;

class HvpOperator {
 public:
  HvpOperator(Network& net, std::vector<Batch> batches, LossKind loss, std::string data_name, OperatorOptions o = {});

  const ParamTable& table() const { return m_table; }
  int64_t size() const { return m_table.total_numel(); }
  torch::Dtype dtype() const { return m_dtype; }
  Curvature curvature() const { return m_o.curvature; }
  int64_t n_hvp() const { return m_n_hvp; }
  double loss() const { return m_loss; }
  const torch::Tensor& gradient() const { return m_grad; }               // flat, mean over batches
  const torch::Tensor& first_batch_gradient() const { return m_grad0; }  // flat, batch 0 only

  torch::Tensor apply(
      const torch::Tensor& v);  // H v (or the chosen curvature's product), flat in, flat out (operator dtype)
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
    // The loss gradient; for the Hessian with create_graph=true. Undefined where a parameter gets none.
    std::vector<torch::Tensor> grads;
    // GGN and Fishers: the outputs z (graph kept), a cotangent u and J^T u (create_graph=true, linear in
    // u, so d(J^T u . v)/du = J v), and per row the output-space factor: p (GGN, cross-entropy) or s.
    torch::Tensor outputs, u, rows;
    std::vector<torch::Tensor> jtu;
    double scale = 1;
  };
  Graph build(size_t batch) const;
  void build_output_space(Graph& g, size_t batch) const;
  torch::Tensor product(const Graph& g, const std::vector<size_t>& block, const torch::Tensor& v_b) const;
  torch::Tensor output_space(const Graph& g, const torch::Tensor& jv) const;

  Network& m_net;
  std::vector<Batch> m_batches;
  LossKind m_loss_kind;
  std::string m_data_name;
  OperatorOptions m_o;
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
