// Schedule arithmetic.
#include "schedule.h"

#include <cmath>

#include "errors.h"

namespace bs {

double Schedule::lr_at(int64_t step) const {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (kind == ScheduleKind::Constant || total <= warmup) return lr;
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
  const double floor = min_lr >= 0 ? min_lr : lr * min_lr_ratio;
  return floor + 0.5 * (1.0 + std::cos(M_PI * progress)) * (lr - floor);
}

void validate(const Schedule& s) {
  if (s.warmup < 0) throw UserError(param("warmup") + " must be >= 0");
  if (!(s.min_lr_ratio >= 0 && s.min_lr_ratio <= 1)) throw UserError(param("min_lr_ratio") + " must be in [0, 1]");
}

}  // namespace bs
