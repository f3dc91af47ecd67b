// Per-slice learning rates for a tensor whose row or column ranges belong to different blockwise groups
// (a fused q/k/v weight: its q and k slices in QK, its v slice in VO). Every optimizer here moves a
// parameter by an update linear in its learning rate, p <- p - lr (wd p + u) with u independent of lr,
// so the tensor runs at the largest of its slices' rates and each slice's move is then scaled by its
// own rate over that one: the update at the slice's rate, up to rounding, for any optimizer, at the
// cost of one copy of the fused tensors per step.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <vector>

#include "schedule.h"

namespace bs {

class SliceSchedules {
 public:
  void add(size_t param, int64_t dim, int64_t begin, int64_t length, const Schedule& s) {
    m_slices.push_back({param, dim, begin, length, s});
  }
  bool empty() const { return m_slices.empty(); }

  // A sliced tensor's rate at `step`: the largest of its slices'.
  void set_tensor_lrs(int64_t step, std::vector<double>& lrs) const {
    std::map<size_t, double> top;
    for (const auto& e : m_slices) top[e.param] = std::max(top.count(e.param) ? top[e.param] : 0.0, e.s.lr_at(step));
    for (const auto& [i, lr] : top) lrs.at(i) = lr;
  }
  void before_step(const std::vector<torch::Tensor>& params) {
    torch::NoGradGuard g;
    for (const auto& e : m_slices)
      if (!m_before.count(e.param)) m_before[e.param] = params.at(e.param).detach().clone();
  }
  // Each slice's move scaled from the tensor's rate `lrs` (as set_tensor_lrs gave it) to its own.
  void after_step(const std::vector<torch::Tensor>& params, int64_t step, const std::vector<double>& lrs) {
    torch::NoGradGuard g;
    for (const auto& e : m_slices) {
      const double lr = lrs.at(e.param), mine = e.s.lr_at(step);
      if (lr == 0 || mine == lr) continue;
      auto now = params.at(e.param).narrow(e.dim, e.begin, e.length);
      const auto before = m_before.at(e.param).narrow(e.dim, e.begin, e.length);
      now.sub_(before).mul_(mine / lr).add_(before);
    }
    m_before.clear();
  }

 private:
  struct Entry {
    size_t param;
    int64_t dim, begin, length;
    Schedule s;
  };
  std::vector<Entry> m_slices;
  std::map<size_t, torch::Tensor> m_before;
};

}  // namespace bs
