// What the benchmarks share for timing: the median of repeated measurements.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace bs {

inline double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The median over k of a[k] / b[k] (the middle two averaged for an even count): a ratio of two times
// taken close together, where the ratio of two separately taken medians or minima may pair different
// spells of a noisy machine.
inline double median_of_ratios(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) r.push_back(a[k] / b[k]);
  std::sort(r.begin(), r.end());
  const size_t m = r.size() / 2;
  return r.size() % 2 ? r[m] : (r[m - 1] + r[m]) / 2;
}

// The median wall time of `repeats` calls of f, in seconds.
template <class F>
double median_seconds(int64_t repeats, F&& f) {
  std::vector<double> t;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  return median(t);
}

}  // namespace bs
