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

// The moves of tensor slices: each fused tensor is saved before a step, and afterwards each slice's
// move is scaled by its own factor. SliceSchedules (the CLI's schedules) and the Python module's
// constant multipliers both rescale through it.
class SliceMoves {
 public:
  void add(size_t param, int64_t dim, int64_t begin, int64_t length) {
    m_slices.push_back({param, dim, begin, length});
  }
  bool empty() const { return m_slices.empty(); }
  size_t size() const { return m_slices.size(); }
  size_t param(size_t k) const { return m_slices[k].param; }
  void before_step(const std::vector<torch::Tensor>& params) {
    torch::NoGradGuard g;
    for (const auto& e : m_slices)
      if (!m_before.count(e.param)) m_before[e.param] = params.at(e.param).detach().clone();
  }
  // Slice k's move scaled by factor(k); a factor of 1 leaves it.
  template <class Factor>
  void after_step(const std::vector<torch::Tensor>& params, const Factor& factor) {
    torch::NoGradGuard g;
    for (size_t k = 0; k < m_slices.size(); ++k) {
      const auto& e = m_slices[k];
      const double f = factor(k);
      if (f == 1.0) continue;
      auto now = params.at(e.param).narrow(e.dim, e.begin, e.length);
      const auto before = m_before.at(e.param).narrow(e.dim, e.begin, e.length);
      now.sub_(before).mul_(f).add_(before);
    }
    m_before.clear();
  }

 private:
  struct Entry {
    size_t param;
    int64_t dim, begin, length;
  };
  std::vector<Entry> m_slices;
  std::map<size_t, torch::Tensor> m_before;
};

class SliceSchedules {
 public:
  void add(size_t param, int64_t dim, int64_t begin, int64_t length, const Schedule& s) {
    m_moves.add(param, dim, begin, length);
    m_schedules.push_back(s);
  }
  bool empty() const { return m_moves.empty(); }

  // A sliced tensor's rate at `step`: the largest of its slices'.
  void set_tensor_lrs(int64_t step, std::vector<double>& lrs) const {
    std::map<size_t, double> top;
    for (size_t k = 0; k < m_moves.size(); ++k) {
      const size_t i = m_moves.param(k);
      top[i] = std::max(top.count(i) ? top[i] : 0.0, m_schedules[k].lr_at(step));
    }
    for (const auto& [i, lr] : top) lrs.at(i) = lr;
  }
  void before_step(const std::vector<torch::Tensor>& params) { m_moves.before_step(params); }
  // Each slice's move scaled from the tensor's rate `lrs` (as set_tensor_lrs gave it) to its own.
  void after_step(const std::vector<torch::Tensor>& params, int64_t step, const std::vector<double>& lrs) {
    m_moves.after_step(params, [&](size_t k) {
      const double lr = lrs.at(m_moves.param(k)), mine = m_schedules[k].lr_at(step);
      return lr == 0 ? 1.0 : mine / lr;
    });
  }

 private:
  SliceMoves m_moves;
  std::vector<Schedule> m_schedules;
};

}  // namespace bs
