// An exact order statistic of |values| over many tensors in about one read of them (Floyd & Rivest's
// sampling idea): a strided sample brackets the wanted rank, one parallel pass counts what falls below
// the bracket and keeps what falls inside it (bracket_pass.h); where many are kept, a sub-sample of them
// and one more pass narrow them the same way, and radix steps on their bit patterns and a selection
// among the last few finish. When the bracket misses (rare), a full sort-free selection over all values
// answers instead. The clipping optimizers' global threshold (clipped_optimizers.h) is the user.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace bs {

// |g + wd * p| elementwise in g's dtype (p undefined: |g|); undefined g contributes nothing.
struct AbsSource {
  torch::Tensor g, p;
  double wd = 0;
};

int64_t total_values(const std::vector<AbsSource>& src);
// The r-th smallest (0-based) of all the sources' values, as a double (exact: the value itself).
// Requires 0 <= r < total_values(src).
double rth_smallest_abs(const std::vector<AbsSource>& src, int64_t r);
// The same by a full selection over all values (the oracle of the tests, and the fallback).
double rth_smallest_abs_reference(const std::vector<AbsSource>& src, int64_t r);
// How many calls of rth_smallest_abs so far found the rank outside their bracket, so that the full
// selection answered (exact either way, but slow): for the tests of the bracket's width.
int64_t bracket_misses();
// The last stage of rth_smallest_abs, exposed for its tests: the rest-th smallest (0-based) of the
// values in `spans` (pointer, count), all in [lo, hi] and non-negative.
float rth_smallest_kept(const std::vector<std::pair<const float*, int64_t>>& spans, int64_t rest, float lo, float hi);

}  // namespace bs
