// FusedBase: the bookkeeping every fused optimizer shares -- per-tensor learning rates and weight
// decay, named flat state tensors (saved and loaded by "<param name>/<state>"), the step count, the
// per-tensor dtype dispatch to the subclass's update, and the step's one parallel region over every
// tensor's job (cpu_loop.h's run_jobs).
#pragma once
#include <string>
#include <vector>

#include "cpu_loop.h"
#include "errors.h"
#include "optimizer.h"

namespace bs {

// Shared bookkeeping: per-tensor learning rates, named state tensors, the step count.
class FusedBase : public Optimizer {
 public:
  FusedBase(const OptimizerInputs& in, const OptimizerOptions& o, std::vector<std::string> state_names)
      : m_params(in.params),
        m_names(in.names),
        m_o(o),
        m_lr(in.params.size(), o.lr),
        m_wd(per_param_decay(in, o)),
        m_state_names(std::move(state_names)) {
    for (auto& p : m_params)
      if (!p.is_contiguous()) throw UserError("optimizer: parameters must be contiguous");
  }
  void set_lrs(const std::vector<double>& lr) override { m_lr = lr; }
  StateDict state_dict() const override {
    StateWriter w(m_names);
    for (size_t i = 0; i < m_state.size(); ++i)
      for (size_t k = 0; k < m_state_names.size(); ++k) w.tensor(i, m_state_names[k], m_state[i][k]);
    return w.finish(m_step);
  }
  void load_state_dict(const StateLookup& get) override {
    const StateReader r(get, m_names);
    if (!r.begin(m_step)) return;
    init_state();
    for (size_t i = 0; i < m_state.size(); ++i)
      for (size_t k = 0; k < m_state_names.size(); ++k) r.copy_into(i, m_state_names[k], m_state[i][k]);
  }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (size_t i = 0; i < m_params.size(); ++i)
      for (int64_t numel : state_numels(i)) n += numel * m_params[i].element_size();
    return n;
  }
  void step() override {
    if (m_state.empty()) init_state();
    ++m_step;
    before_step();
    std::vector<torch::Tensor> grads;  // alive until the jobs ran
    std::vector<TensorJob> jobs;
    for (size_t i = 0; i < m_params.size(); ++i) {
      const auto& g = m_params[i].grad();
      if (!g.defined()) continue;
      grads.push_back(g.contiguous());
      AT_DISPATCH_FLOATING_TYPES(m_params[i].scalar_type(), "blocksharp_step",
                                 [&] { jobs.push_back(update<scalar_t>(i, grads.back())); });
    }
    run_jobs(jobs);
  }

 protected:
  virtual std::vector<int64_t> state_numels(size_t i) const = 0;
  virtual void before_step() {}  // after the step count advanced, before any tensor is updated
  // Tensor i's update with gradient g: the job run_jobs runs with the other tensors' (or an empty job,
  // where the subclass updated the tensor itself).
  virtual TensorJob update_f(size_t i, const torch::Tensor& g) = 0;
  virtual TensorJob update_d(size_t i, const torch::Tensor& g) = 0;
  template <class T>
  TensorJob update(size_t i, const torch::Tensor& g) {
    if constexpr (std::is_same_v<T, float>)
      return update_f(i, g);
    else
      return update_d(i, g);
  }
  // Tensor i's job for an update f(p[k], g[k], s0[k]) (S = 1) or f(p[k], g[k], s0[k], s1[k]) (S = 2) of
  // every element, over its first S state tensors: cpu_loop.h's elementwise_job in `ways`.
  template <int S, class T, class F>
  TensorJob elements_job(size_t i, const torch::Tensor& g, const F& f, Ways ways = Ways::one) {
    static_assert(S == 1 || S == 2, "one or two per-element state tensors");
    T* p = m_params[i].data_ptr<T>();
    const T* gp = g.data_ptr<T>();
    T* s0 = m_state[i][0].data_ptr<T>();
    if constexpr (S == 1) {
      return elementwise_job(
          m_params[i].numel(), [=](int64_t k) { f(p[k], gp[k], s0[k]); }, ways);
    } else {
      T* s1 = m_state[i][1].data_ptr<T>();
      return elementwise_job(
          m_params[i].numel(), [=](int64_t k) { f(p[k], gp[k], s0[k], s1[k]); }, ways);
    }
  }
  void init_state() {
    m_state.clear();
    for (size_t i = 0; i < m_params.size(); ++i) {
      std::vector<torch::Tensor> s;
      for (int64_t numel : state_numels(i)) s.push_back(torch::zeros({numel}, m_params[i].options()));
      m_state.push_back(std::move(s));
    }
  }
  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  OptimizerOptions m_o;
  std::vector<double> m_lr, m_wd;
  std::vector<std::string> m_state_names;
  std::vector<std::vector<torch::Tensor>> m_state;
  int64_t m_step = 0;
};

#define BS_DISPATCH_UPDATE                                                                   \
  TensorJob update_f(size_t i, const torch::Tensor& g) override { return run<float>(i, g); } \
  TensorJob update_d(size_t i, const torch::Tensor& g) override { return run<double>(i, g); }

}  // namespace bs
