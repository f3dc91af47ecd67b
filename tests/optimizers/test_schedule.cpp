// Schedules. Oracle: the warmup + cosine formula of the Sharpness Disparity / nanoGPT code evaluated
// by hand at known points.
#include <gtest/gtest.h>

#include <cmath>

#include "errors.h"
#include "schedule.h"

using namespace bs;

TEST(Schedule, WarmupThenCosineToFloor) {
  Schedule s;
  s.kind = ScheduleKind::Cosine;
  s.lr = 1.0;
  s.warmup = 10;
  s.total = 110;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);
  EXPECT_NEAR(s.lr_at(60), 0.1 + 0.5 * (1 + std::cos(M_PI * 0.5)) * 0.9, 1e-15);
  EXPECT_NEAR(s.lr_at(110), 0.1, 1e-15);
}

TEST(Schedule, ConstantAndValidation) {
  Schedule s;
  s.kind = ScheduleKind::Constant;
  s.lr = 0.5;
  s.total = 10;
  EXPECT_DOUBLE_EQ(s.lr_at(7), 0.5);
  s.warmup = -1;
  EXPECT_THROW(validate(s), UserError);
}
