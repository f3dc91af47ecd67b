// all_finite's pass: each value's bits against the exponent mask, OR-ed over a thread's share (no
// floating-point compare and no early exit, so that the loop vectorizes; the answer is the same in any
// order and variant).
#include "finite_check.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "simd_loop.h"

namespace bs {

namespace {

template <class T, class U>
bool any_nonfinite(const T* x, int64_t n, U exponent) {
  U seen = 0;
  for (int64_t i = 0; i < n; ++i) {
    U bits;
    std::memcpy(&bits, x + i, sizeof bits);
    seen |= static_cast<U>((bits & exponent) == exponent);
  }
  return seen != 0;
}

template <class T, class U>
bool finite_values(const torch::Tensor& t, U exponent) {
  const auto c = t.contiguous();
  const T* x = c.data_ptr<T>();
  std::atomic<bool> bad{false};
  at::parallel_for(0, c.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    bool found = false;
    in_variant([&] { found = any_nonfinite(x + begin, end - begin, exponent); });
    if (found) bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load(std::memory_order_relaxed);
}

}  // namespace

bool all_finite(const torch::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return true;
  if (t.device().is_cpu() && t.layout() == torch::kStrided) {
    if (t.scalar_type() == torch::kFloat32) return finite_values<float, uint32_t>(t, 0x7f800000u);
    if (t.scalar_type() == torch::kFloat64) return finite_values<double, uint64_t>(t, 0x7ff0000000000000ull);
  }
  return torch::isfinite(t).all().item<bool>();
}

}  // namespace bs
