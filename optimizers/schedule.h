// Learning-rate schedules: linear warmup from lr/warmup to lr, then constant or cosine decay to
// min_lr_ratio*lr at the last step (the nanoGPT / Sharpness Disparity code convention).
#pragma once
#include <cstdint>
#include <string>

namespace bs {

enum class ScheduleKind { Constant, Cosine };

struct Schedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double lr = 1e-3;
  int64_t warmup = 0, total = 1;
  double min_lr_ratio = 0.1;
  double min_lr = -1;                // absolute cosine floor when >= 0 (blockwise groups share the base floor)
  double lr_at(int64_t step) const;  // step counted from 0
};

void validate(const Schedule& s);

}  // namespace bs
