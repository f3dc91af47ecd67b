// order_statistic.h: the sample is selected on the bit patterns of non-negative doubles (monotone in
// the value, NaN above infinity); the bracket pass compares in the tensor's dtype where the bracket's
// ends are exact in it, else in double.
#include "order_statistic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu_loop.h"

namespace bs {

namespace {

using Key = uint64_t;

Key key_of(double v) {
  Key k;
  std::memcpy(&k, &v, sizeof k);
  return k;
}

double value_of(Key k) {
  double v;
  std::memcpy(&v, &k, sizeof v);
  return v;
}

// |g + wd p| (|g| without decay) in the tensor's dtype.
template <class T, bool kDecay>
T abs_value(const T* __restrict g, const T* __restrict p, T wd, int64_t k) {
  if constexpr (kDecay) {
    const T d = p[k] * wd;
    return std::abs(g[k] + d);
  } else {
    return std::abs(g[k]);
  }
}

// One value |g + wd p| of a contiguous source, widened to double (the strided sample).
double abs_at(const AbsSource& s, int64_t k) {
  double v = 0;
  AT_DISPATCH_FLOATING_TYPES(s.g.scalar_type(), "abs_at", [&] {
    const scalar_t* g = s.g.data_ptr<scalar_t>();
    const auto wd = static_cast<scalar_t>(s.wd);  // as ATen's p * wd: the scalar in the tensor's dtype
    v = s.p.defined() ? abs_value<scalar_t, true>(g, s.p.data_ptr<scalar_t>(), wd, k)
                      : abs_value<scalar_t, false>(g, nullptr, wd, k);
  });
  return v;
}

std::vector<AbsSource> contiguous_sources(const std::vector<AbsSource>& src) {
  std::vector<AbsSource> out;
  for (const auto& s : src)
    if (s.g.defined() && s.g.numel() > 0)
      out.push_back({s.g.detach().contiguous(), s.p.defined() ? s.p.detach().contiguous() : torch::Tensor(), s.wd});
  return out;
}

// What one chunk of the bracket pass found: counts below and at the bracket's ends, the values inside.
struct ChunkCount {
  int64_t below = 0, at_lo = 0, at_hi = 0;
  std::vector<double> inside;
};

constexpr int64_t kChunk = 4096;  // elements per bracket-pass chunk: the second loop reads them from L1

// The bracket pass over one chunk (at most kChunk values) without branches: the counts in one loop
// the compiler vectorizes, then the values strictly inside (lo, hi) compacted into `buf`. Compares in
// C: the tensor's dtype T where the bracket's ends are exact in it, else double. NaN compares false
// everywhere: it counts as above the bracket, where the sort puts it too.
template <class T, class C, bool kDecay>
void count_chunk(const T* __restrict g, const T* __restrict p, T wd, int32_t n, C lo, C hi, C* __restrict buf,
                 ChunkCount& cc) {
  int32_t below = 0, at_lo = 0, at_hi = 0, in = 0;
  for (int32_t k = 0; k < n; ++k) {
    const C v = abs_value<T, kDecay>(g, p, wd, k);
    below += v < lo;
    at_lo += v == lo;
    at_hi += v == hi;
    in += (v > lo) & (v < hi);
  }
  cc.below += below;
  cc.at_lo += at_lo;
  cc.at_hi += lo == hi ? 0 : at_hi;
  if (in == 0) return;
  int32_t j = 0;
  for (int32_t k = 0; k < n; ++k) {
    const C v = abs_value<T, kDecay>(g, p, wd, k);
    buf[j] = v;
    j += (v > lo) & (v < hi);
  }
  cc.inside.insert(cc.inside.end(), buf, buf + j);
}

template <class T, class C>
void count_source_chunk(const AbsSource& s, int64_t b, int32_t n, C lo, C hi, ChunkCount& cc) {
  C buf[kChunk];
  const T* g = s.g.data_ptr<T>() + b;
  const auto wd = static_cast<T>(s.wd);  // as ATen's p * wd: the scalar in the tensor's dtype
  if (s.p.defined())
    count_chunk<T, C, true>(g, s.p.data_ptr<T>() + b, wd, n, lo, hi, buf, cc);
  else
    count_chunk<T, C, false>(g, nullptr, wd, n, lo, hi, buf, cc);
}

}  // namespace

int64_t total_values(const std::vector<AbsSource>& src) {
  int64_t n = 0;
  for (const auto& s : src)
    if (s.g.defined()) n += s.g.numel();
  return n;
}

double rth_smallest_abs_reference(const std::vector<AbsSource>& src, int64_t r) {
  std::vector<torch::Tensor> flat;
  for (const auto& s : contiguous_sources(src)) {
    const auto v = s.p.defined() ? s.g + s.wd * s.p : s.g;
    flat.push_back(v.abs().reshape({-1}).to(torch::kFloat64));
  }
  return std::get<0>(torch::kthvalue(torch::cat(flat), r + 1)).item<double>();
}

double rth_smallest_abs(const std::vector<AbsSource>& in, int64_t r) {
  const auto src = contiguous_sources(in);
  const int64_t n = total_values(src);
  TORCH_CHECK(r >= 0 && r < n, "rth_smallest_abs: rank ", r, " of ", n, " values");
  // A strided sample of S values brackets rank r within +-m sample ranks (about 4 standard
  // deviations of a sample rank), so that about 2m/S of all values fall inside the bracket.
  const int64_t S = std::min<int64_t>(n, 1 << 16);
  if (S < 1024) return rth_smallest_abs_reference(src, r);  // small: one selection is cheapest
  std::vector<Key> sample;
  sample.reserve(S);
  {
    size_t t = 0;
    int64_t base = 0;
    for (int64_t j = 0; j < S; ++j) {
      const int64_t pos = static_cast<int64_t>((static_cast<__int128>(j) * n) / S);
      while (pos >= base + src[t].g.numel()) base += src[t++].g.numel();
      sample.push_back(key_of(abs_at(src[t], pos - base)));
    }
  }
  const int64_t m = static_cast<int64_t>(std::ceil(4 * std::sqrt(static_cast<double>(S)))) + 4;
  const int64_t q = static_cast<int64_t>((static_cast<__int128>(r) * S) / n);
  // The sample's (q-m)-th and (q+m)-th smallest: two selections, not a sort.
  Key lo = 0, hi = key_of(std::numeric_limits<double>::infinity());
  auto from = sample.begin();
  if (q - m >= 0) {
    std::nth_element(sample.begin(), sample.begin() + (q - m), sample.end());
    lo = sample[q - m];
    from = sample.begin() + (q - m);
  }
  if (q + m < S) {
    std::nth_element(from, sample.begin() + (q + m), sample.end());
    hi = sample[q + m];
  }

  const double lo_v = value_of(lo), hi_v = value_of(hi);

  // One pass over every value, in chunks across the threads.
  std::vector<std::pair<size_t, int64_t>> chunks;  // (source, first element)
  for (size_t t = 0; t < src.size(); ++t)
    for (int64_t b = 0; b < src[t].g.numel(); b += kChunk) chunks.emplace_back(t, b);
  // Per intra-op thread: counts and the values inside, in scratch kept from call to call (a training
  // loop asks every step, and fresh pages cost more than the pass). Their order does not matter: the
  // r-th value is the same whichever way the values were gathered.
  thread_local std::vector<ChunkCount> per_thread;
  per_thread.resize(std::max<size_t>(per_thread.size(), static_cast<size_t>(at::get_num_threads())));
  for (auto& cc : per_thread) {
    cc.below = cc.at_lo = cc.at_hi = 0;
    cc.inside.clear();
  }
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), kGrain / kChunk, [&](int64_t begin, int64_t end) {
    ChunkCount& cc = per_thread[at::get_thread_num()];
    for (int64_t c = begin; c < end; ++c) {
      const auto [t, b] = chunks[c];
      const AbsSource& s = src[t];
      const auto n_c = static_cast<int32_t>(std::min(kChunk, s.g.numel() - b));
      AT_DISPATCH_FLOATING_TYPES(s.g.scalar_type(), "count_chunk", [&] {
        const auto lo_t = static_cast<scalar_t>(lo_v), hi_t = static_cast<scalar_t>(hi_v);
        if (static_cast<double>(lo_t) == lo_v && static_cast<double>(hi_t) == hi_v)
          count_source_chunk<scalar_t, scalar_t>(s, b, n_c, lo_t, hi_t, cc);
        else
          count_source_chunk<scalar_t, double>(s, b, n_c, lo_v, hi_v, cc);
      });
    }
  });
  int64_t below = 0, at_lo = 0, at_hi = 0;
  thread_local std::vector<double> inside;
  inside.clear();
  for (auto& cc : per_thread) {
    below += cc.below;
    at_lo += cc.at_lo;
    at_hi += cc.at_hi;
    inside.insert(inside.end(), cc.inside.begin(), cc.inside.end());
  }
  int64_t rest = r - below;
  if (rest >= 0) {
    if (rest < at_lo) return value_of(lo);
    rest -= at_lo;
    if (rest < static_cast<int64_t>(inside.size())) {
      std::nth_element(inside.begin(), inside.begin() + rest, inside.end());
      return inside[rest];
    }
    rest -= static_cast<int64_t>(inside.size());
    if (rest < at_hi) return value_of(hi);
  }
  return rth_smallest_abs_reference(src, r);  // the bracket missed the rank
}

}  // namespace bs
