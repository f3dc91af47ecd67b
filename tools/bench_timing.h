// What the benchmarks share for timing: the median of repeated measurements.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace bs {

// The middle value, or the mean of the middle two for an even count (as Python's statistics.median,
// which the PyTorch side of bench train uses). t is not empty.
inline double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  const size_t m = t.size() / 2;
  return t.size() % 2 ? t[m] : (t[m - 1] + t[m]) / 2;
}

// a[k] / b[k] for each k of both: ratios of two times taken close together.
inline std::vector<double> ratios(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) r.push_back(a[k] / b[k]);
  return r;
}

// The median over k of a[k] / b[k], where the ratio of two separately taken medians or minima may pair
// different spells of a noisy machine.
inline double median_of_ratios(const std::vector<double>& a, const std::vector<double>& b) {
  return median(ratios(a, b));
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
