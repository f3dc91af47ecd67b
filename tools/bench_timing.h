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
