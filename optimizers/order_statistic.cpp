// order_statistic.h: the sample is selected on the bit patterns of non-negative doubles (monotone in
// the value, NaN above infinity); the bracket pass (bracket_pass.h) compares in the tensor's dtype
// where the bracket's ends are exact in it, else in double, and keeps what it finds inside per thread;
// the kept values' rank is then found, where there are many, by the same idea once more on them (a
// sub-sample and a narrower bracket), and by radix steps on their bit patterns (a histogram of 11 bits
// below the bracket's common prefix, the rank's bin kept, again), and a selection among the last few.
#include "order_statistic.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bracket_pass.h"
#include "cpu_loop.h"

namespace bs {

namespace {

template <class V>
using KeyOf = std::conditional_t<sizeof(V) == 4, uint32_t, uint64_t>;

// A non-negative value's bit pattern: monotone in the value (+inf above every finite value).
template <class V>
KeyOf<V> key_of(V v) {
  KeyOf<V> k;
  std::memcpy(&k, &v, sizeof k);
  return k;
}

template <class V>
V value_of(KeyOf<V> k) {
  V v;
  std::memcpy(&v, &k, sizeof v);
  return v;
}

// The strided sample: the values |g + wd p| at positions floor(j n / S), j < S, of all the
// sources end to end, widened to double. Taken in pieces across the threads (each read is a likely
// TLB and cache miss, so one thread would wait on them in turn); value j is the same whichever thread
// reads it. Runs of 16 neighbours instead (a sixteenth of the misses: 0.84 -> 0.35 ms per call at 1
// thread on bench optim's set) were measured and not kept: in real gradients neighbours are alike (the
// runs' design effect was 7-10 on gpt2-small-cpu and llama-small-cpu after 0-30 steps on text), so
// they bracket the rank three times wider, while one value every n / S brackets it as a random sample
// would, or better (the count below the wanted value at 0.6 of a binomial's deviation there).
std::vector<double> sample_values(const std::vector<AbsSource>& src, int64_t n, int64_t S) {
  std::vector<double> values(static_cast<size_t>(S));
  std::vector<int64_t> ends;  // each source's end in the values end to end
  for (const auto& s : src) ends.push_back((ends.empty() ? 0 : ends.back()) + s.g.numel());
  const int64_t step = n / S, step_rem = n % S;
  at::parallel_for(0, S, 4096, [&](int64_t j_begin, int64_t j_end) {
    // pos = floor(j n / S) stepped without a division per value (they are independent loads then, and
    // the memory system overlaps their misses): pos grows by n / S, and by one more whenever the
    // remainder (j n mod S) passes S.
    const auto jn = static_cast<__int128>(j_begin) * n;
    int64_t j = j_begin, pos = static_cast<int64_t>(jn / S), rem = static_cast<int64_t>(jn % S);
    for (size_t t = std::upper_bound(ends.begin(), ends.end(), pos) - ends.begin(); j < j_end; ++t) {
      const AbsSource& s = src[t];
      const int64_t base = ends[t] - s.g.numel();
      AT_DISPATCH_FLOATING_TYPES(s.g.scalar_type(), "sample_values", [&] {
        const scalar_t* g = s.g.data_ptr<scalar_t>();
        const scalar_t* p = s.p.defined() ? s.p.data_ptr<scalar_t>() : nullptr;
        const auto wd = static_cast<scalar_t>(s.wd);  // as ATen's p * wd: the scalar in the tensor's dtype
        for (; j < j_end && pos < ends[t]; ++j) {
          values[static_cast<size_t>(j)] = static_cast<double>(abs_value<scalar_t>(g, p, wd, pos - base));
          pos += step;
          rem += step_rem;
          if (rem >= S) {
            rem -= S;
            ++pos;
          }
        }
      });
    }
  });
  return values;
}

// The sources with values, each tensor as it is where it is contiguous (only its data are read; a
// detach() and contiguous() make a new tensor each, ~1.3 us apiece: 0.13-0.2 ms for a model's 130).
std::vector<AbsSource> contiguous_sources(const std::vector<AbsSource>& src) {
  auto plain = [](const torch::Tensor& t) { return !t.defined() || t.is_contiguous() ? t : t.detach().contiguous(); };
  std::vector<AbsSource> out;
  out.reserve(src.size());
  for (const auto& s : src)
    if (s.g.defined() && s.g.numel() > 0) out.push_back({plain(s.g), plain(s.p), s.wd});
  return out;
}

// The sample's size for n values: n^(2/3) / 4, at least 16,384 (at most n). Reading the sample costs
// about one memory latency per value, and the bracket it gives keeps about 10 sqrt(f (1 - f) / S) of
// all n values for the radix steps; the sum of the two is least near S ~ n^(2/3). Measured on the 33.6M
// float32 values of `bench optim`'s set (one core): 65,536 values took 7.0 ms in all, 32,768 6.6, and
// 16,384 6.3 at f = 0.9 (the same at f = 0.5), with a bracket of 8 deviations (now 5, below).
int64_t sample_size(int64_t n) {
  const double two_thirds = std::cbrt(static_cast<double>(n));
  return std::min<int64_t>(n, std::max<int64_t>(1 << 14, static_cast<int64_t>(two_thirds * two_thirds / 4)));
}

// Values kept by one thread, in storage kept from call to call (a training loop asks every step, and
// fresh pages cost more than the pass); only `used` of them count.
template <class V>
struct Kept {
  std::vector<V> values;
  int64_t used = 0;
  V* room(int64_t n) {  // space for n more values past `used`
    if (static_cast<int64_t>(values.size()) < used + n)
      values.resize(std::max<size_t>(2 * values.size(), static_cast<size_t>(used + n)));
    return values.data() + used;
  }
};

// What one thread of the bracket pass found: the count below the bracket and the values inside it,
// float32 where they were compared in float32, else double.
struct ThreadFind {
  int64_t below = 0;
  Kept<float> f;
  Kept<double> d;
};

constexpr int64_t kChunk = 1 << 14;  // values per bracket-pass chunk

// One chunk of source s: its values compared in C (T where the bracket is exact in it, else double).
template <class T, class C>
void find_in_chunk(const AbsSource& s, int64_t b, int64_t n, C lo, C hi, Kept<C>& kept, int64_t& below) {
  const T* g = s.g.data_ptr<T>() + b;
  const T* p = s.p.defined() ? s.p.data_ptr<T>() + b : nullptr;
  const auto wd = static_cast<T>(s.wd);  // as ATen's p * wd: the scalar in the tensor's dtype
  C* out = kept.room(n + 16);
  if constexpr (std::is_same_v<T, float> && std::is_same_v<C, float>) {
    if (use_avx512()) {
      kept.used += bracket_chunk_avx512(g, p, wd, n, lo, hi, out, below);
      return;
    }
  }
  kept.used += bracket_chunk_portable<T, C>(g, p, wd, n, lo, hi, out, below);
}

// Two chunks of float32 sources compared in float32 (the bracket's ends exact in it), stepped together
// (bracket_pair_avx512; call only where use_avx512()).
void find_in_pair(const AbsSource& s0, int64_t b0, const AbsSource& s1, int64_t b1, float lo, float hi,
                  ThreadFind& found) {
  const int64_t n0 = std::min(kChunk, s0.g.numel() - b0), n1 = std::min(kChunk, s1.g.numel() - b1);
  const float* p0 = s0.p.defined() ? s0.p.data_ptr<float>() + b0 : nullptr;
  const float* p1 = s1.p.defined() ? s1.p.data_ptr<float>() + b1 : nullptr;
  found.f.used +=
      bracket_pair_avx512(s0.g.data_ptr<float>() + b0, p0, static_cast<float>(s0.wd), n0, s1.g.data_ptr<float>() + b1,
                          p1, static_cast<float>(s1.wd), n1, lo, hi, found.f.room(n0 + n1 + 16), found.below);
}

// The keys of one piece in [lo, hi], in order, into out (room for n + 16): the AVX-512 filter for
// 32-bit keys where the CPU has it.
template <class K>
int64_t keep_keys(const void* from, int64_t n, K lo, K hi, K* out) {
  if constexpr (sizeof(K) == 4) {
    if (use_avx512()) return keep_keys_avx512(from, n, lo, hi, out);
  }
  return keep_keys_portable<K>(from, n, lo, hi, out);
}

// The kept values' stages (select_kept, select_many_kept) work on pieces of at most kPiece values
// (a piece's counts fit in 32 bits) across the threads, each with kSpare slots past its kept values
// for a filter's last (16-wide) store.
constexpr int64_t kPiece = 1 << 16;
constexpr int64_t kSpare = 16;

// The rest-th smallest (0-based) of the values in `spans`, all in [lo, hi] and non-negative. Each
// radix step histograms the 11 bits below the common prefix of the current key range and keeps the
// bin holding the rank, so the range narrows 2048-fold per step (or to one key); a selection among the
// last few thousand values finishes. The values in play are cut into pieces of at most kPiece, whose
// histograms and filtering run across the threads; a piece's count in the rank's bin places what it
// keeps, so the kept keys come out in the same order at every thread count. A piece's histogram is
// counted as four interleaved ones added at the end: the kept values crowd into few bins, and
// increments of one counter in a row would wait on each other's stores.
template <class V>
V select_kept(const std::vector<std::pair<const V*, int64_t>>& spans, int64_t rest, V lo, V hi) {
  using K = KeyOf<V>;
  K lo_k = key_of(lo), hi_k = key_of(hi);
  std::vector<std::pair<const char*, int64_t>> pieces;  // (first value's bytes, values)
  auto cut = [&](const void* values, int64_t n) {
    for (int64_t b = 0; b < n; b += kPiece)
      pieces.emplace_back(static_cast<const char*>(values) + b * static_cast<int64_t>(sizeof(K)),
                          std::min(kPiece, n - b));
  };
  auto key_at = [](const char* at, int64_t k) {
    K x;
    std::memcpy(&x, at + k * static_cast<int64_t>(sizeof(K)), sizeof x);
    return x;
  };
  int64_t count = 0;
  for (const auto& [v, n] : spans) {
    cut(v, n);
    count += n;
  }
  std::vector<K> keys, next;
  const auto n_pieces = [&] { return static_cast<int64_t>(pieces.size()); };
  while (count > 4096 && lo_k != hi_k) {
    const K diff = lo_k ^ hi_k;
    const int top = static_cast<int>(8 * sizeof(K)) - (sizeof(K) == 4 ? __builtin_clz(static_cast<uint32_t>(diff))
                                                                      : __builtin_clzll(static_cast<uint64_t>(diff)));
    const int shift = std::max(0, top - 11);
    const K base = lo_k >> shift;
    const auto bins = static_cast<int64_t>((hi_k >> shift) - base) + 1;
    std::vector<int32_t> hist(static_cast<size_t>(n_pieces() * bins), 0);  // a histogram per piece
    at::parallel_for(0, n_pieces(), 1, [&](int64_t begin, int64_t end) {
      std::vector<int32_t> four(static_cast<size_t>(4 * bins));
      for (int64_t q = begin; q < end; ++q) {
        std::fill(four.begin(), four.end(), 0);
        int32_t *h0 = four.data(), *h1 = h0 + bins, *h2 = h1 + bins, *h3 = h2 + bins;
        const auto [at, n] = pieces[static_cast<size_t>(q)];
        int64_t k = 0;
        for (; k + 4 <= n; k += 4) {
          ++h0[(key_at(at, k) >> shift) - base];
          ++h1[(key_at(at, k + 1) >> shift) - base];
          ++h2[(key_at(at, k + 2) >> shift) - base];
          ++h3[(key_at(at, k + 3) >> shift) - base];
        }
        for (; k < n; ++k) ++h0[(key_at(at, k) >> shift) - base];
        int32_t* h = hist.data() + q * bins;
        for (int64_t i = 0; i < bins; ++i) h[i] = h0[i] + h1[i] + h2[i] + h3[i];
      }
    });
    int64_t bin = 0;
    for (;; ++bin) {
      int64_t in_bin = 0;
      for (int64_t q = 0; q < n_pieces(); ++q) in_bin += hist[static_cast<size_t>(q * bins + bin)];
      if (rest < in_bin) break;
      rest -= in_bin;
    }
    const K bin_lo = static_cast<K>((base + bin) << shift), bin_hi = static_cast<K>(bin_lo + ((K(1) << shift) - 1));
    const K new_lo = std::max(lo_k, bin_lo), new_hi = std::min(hi_k, bin_hi);
    // Piece q keeps its keys in the bin at [at[q] + q kSpare, ...): at[q] of the earlier pieces'
    // counts, and kSpare slots per piece for the filter's stores past the end; then closed up in order.
    std::vector<int64_t> at(static_cast<size_t>(n_pieces()) + 1, 0);
    for (int64_t q = 0; q < n_pieces(); ++q) at[q + 1] = at[q] + hist[static_cast<size_t>(q * bins + bin)];
    next.resize(static_cast<size_t>(at.back() + kSpare * n_pieces()));
    at::parallel_for(0, n_pieces(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const auto [from, n] = pieces[static_cast<size_t>(q)];
        keep_keys<K>(from, n, new_lo, new_hi, next.data() + at[q] + kSpare * q);
      }
    });
    for (int64_t q = 1; q < n_pieces(); ++q)
      std::copy(next.begin() + at[q] + kSpare * q, next.begin() + at[q + 1] + kSpare * q, next.begin() + at[q]);
    next.resize(static_cast<size_t>(at.back()));
    keys.swap(next);
    lo_k = new_lo;
    hi_k = new_hi;
    count = static_cast<int64_t>(keys.size());
    pieces.clear();
    cut(keys.data(), count);
  }
  std::vector<K> last;  // the few left (or all, where no step ran), gathered for the selection
  last.reserve(static_cast<size_t>(count));
  for (const auto& [from, n] : pieces)
    for (int64_t k = 0; k < n; ++k) last.push_back(key_at(from, k));
  std::nth_element(last.begin(), last.begin() + rest, last.end());
  return value_of<V>(last[static_cast<size_t>(rest)]);
}

// The rest-th smallest of the kept values in `spans` (all in [lo, hi]), where there are many: the
// bracket idea once more, on them. A strided sub-sample of kSubSample values brackets the rank within
// +-5 deviations, one pass (bracket_pass.h, across the threads in pieces) counts the values below the
// narrower bracket and keeps those inside it, about 10 sqrt(f (1 - f) / kSubSample) of them (8 % at
// the median), and the radix steps finish on those: the pass compares 16 values per instruction where
// a radix step's histogram counts one at a time (about 1 ns per value on the Xeon of 2026-12-02; the
// kept values are mostly out of the core's cache by then, written while the bracket pass streamed).
// Where the narrower bracket misses the rank (rare), the radix steps run on all of them.
template <class V>
V select_many_kept(const std::vector<std::pair<const V*, int64_t>>& spans, int64_t rest, V lo, V hi) {
  constexpr int64_t kSubSample = 4096;
  int64_t count = 0;
  for (const auto& span : spans) count += span.second;
  if (count <= kPiece) return select_kept<V>(spans, rest, lo, hi);
  // The sub-sample: values at positions floor(j count / kSubSample) of the spans end to end.
  std::vector<V> sub;
  sub.reserve(kSubSample);
  {
    size_t t = 0;
    int64_t base = 0;
    const int64_t step = count / kSubSample, step_rem = count % kSubSample;
    for (int64_t j = 0; j < kSubSample; ++j) {
      const int64_t pos = j * step + j * step_rem / kSubSample;  // floor(j count / kSubSample)
      while (pos >= base + spans[t].second) base += spans[t++].second;
      sub.push_back(spans[t].first[pos - base]);
    }
  }
  const int64_t q = static_cast<int64_t>(static_cast<__int128>(rest) * kSubSample / count);
  const double f = static_cast<double>(q) / kSubSample;
  const int64_t m = static_cast<int64_t>(std::ceil(5 * std::sqrt(kSubSample * f * (1 - f)))) + 4;
  V sub_lo = lo, sub_hi = hi;
  if (q + m < kSubSample) {
    std::nth_element(sub.begin(), sub.begin() + (q + m), sub.end());
    sub_hi = sub[static_cast<size_t>(q + m)];
  }
  if (q - m >= 0) {  // among the values before q + m, all at most sub_hi
    const auto end = q + m < kSubSample ? sub.begin() + (q + m) : sub.end();
    std::nth_element(sub.begin(), sub.begin() + (q - m), end);
    sub_lo = sub[static_cast<size_t>(q - m)];
  }
  // One pass in pieces: piece k keeps its values at k (kPiece + kSpare), then closed up in order.
  std::vector<std::pair<const V*, int64_t>> pieces;
  for (const auto& [v, n] : spans)
    for (int64_t b = 0; b < n; b += kPiece) pieces.emplace_back(v + b, std::min(kPiece, n - b));
  const auto n_pieces = static_cast<int64_t>(pieces.size());
  thread_local std::vector<V> scratch;  // kept from call to call: fresh pages cost more than the pass
  std::vector<V>& kept = scratch;
  kept.resize(std::max(kept.size(), static_cast<size_t>(n_pieces * (kPiece + kSpare))));
  std::vector<int64_t> kept_n(static_cast<size_t>(n_pieces)), below_n(static_cast<size_t>(n_pieces), 0);
  at::parallel_for(0, n_pieces, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const auto [v, n] = pieces[static_cast<size_t>(k)];
      V* out = kept.data() + k * (kPiece + kSpare);
      int64_t& below = below_n[static_cast<size_t>(k)];
      int64_t& found = kept_n[static_cast<size_t>(k)];
      if constexpr (std::is_same_v<V, float>) {
        if (use_avx512()) {
          found = bracket_chunk_avx512(v, nullptr, 0.0F, n, sub_lo, sub_hi, out, below);
          continue;
        }
      }
      found = bracket_chunk_portable<V, V, false>(v, nullptr, V(0), n, sub_lo, sub_hi, out, below);
    }
  });
  int64_t below = 0, inside = 0;
  for (int64_t k = 0; k < n_pieces; ++k) {
    std::copy_n(kept.begin() + k * (kPiece + kSpare), kept_n[static_cast<size_t>(k)], kept.begin() + inside);
    inside += kept_n[static_cast<size_t>(k)];
    below += below_n[static_cast<size_t>(k)];
  }
  const int64_t sub_rest = rest - below;
  if (sub_rest >= 0 && sub_rest < inside) return select_kept<V>({{kept.data(), inside}}, sub_rest, sub_lo, sub_hi);
  return select_kept<V>(spans, rest, lo, hi);
}

std::atomic<int64_t> g_bracket_misses{0};

}  // namespace

int64_t bracket_misses() { return g_bracket_misses.load(std::memory_order_relaxed); }

float rth_smallest_kept(const std::vector<std::pair<const float*, int64_t>>& spans, int64_t rest, float lo, float hi) {
  return select_many_kept<float>(spans, rest, lo, hi);
}

int64_t total_values(const std::vector<AbsSource>& src) {
  int64_t n = 0;
  for (const auto& s : src)
    if (s.g.defined()) n += s.g.numel();
  return n;
}

double rth_smallest_abs_reference(const std::vector<AbsSource>& src, int64_t r) {
  const torch::NoGradGuard no_grad;  // parameters may require grad: no graph for g + wd p
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
  // A strided sample of S values brackets rank r within +-m sample ranks: 5 standard deviations of
  // the count of a random sample's values below the r-th, sqrt(S f (1 - f)) at f = r / n, so that
  // about 2m/S of all values fall inside the bracket (at S = 16,384: 4 % at the median, 2.3 % at
  // f = 0.9; a strided sample of unordered values keeps fewer: 3.1 % and 1.9 % measured). A random
  // sample would miss the rank once in ~2 million calls (the full selection then answers;
  // bracket_misses() counts it); with 8
  // deviations a call took 4-7 % longer on bench optim's set (more values kept for the radix steps).
  const int64_t S = sample_size(n);
  if (S < 1024) return rth_smallest_abs_reference(src, r);  // small: one selection is cheapest
  const std::vector<double> sample = sample_values(src, n, S);
  // The sample's ranks are selected by the radix selection below (a few passes over the sample;
  // std::nth_element's branches cost more). Its range: every non-negative bit pattern, NaN included
  // (above infinity, where a sort puts it).
  const std::vector<std::pair<const double*, int64_t>> whole = {{sample.data(), S}};
  const double top = value_of<double>(std::numeric_limits<int64_t>::max());
  // Up to 16,384 values the sample is every value (step 1): the rank is selected in it, without the
  // bracket and a second pass.
  if (S == n) return select_kept<double>(whole, r, 0.0, top);
  // Else the bracket: the sample's (q-m)-th and (q+m)-th smallest.
  const int64_t q = static_cast<int64_t>((static_cast<__int128>(r) * S) / n);
  const double f = static_cast<double>(q) / static_cast<double>(S);
  const int64_t m = static_cast<int64_t>(std::ceil(5 * std::sqrt(static_cast<double>(S) * f * (1 - f)))) + 4;
  const double lo_v = q - m >= 0 ? select_kept<double>(whole, q - m, 0.0, top) : 0.0;
  const double hi_v = q + m < S ? select_kept<double>(whole, q + m, 0.0, top) : std::numeric_limits<double>::infinity();

  // One pass over every value, in chunks across the threads. The order in which values are kept
  // does not matter: the r-th value is the same whichever way they were gathered.
  std::vector<std::pair<size_t, int64_t>> chunks;  // (source, first element)
  for (size_t t = 0; t < src.size(); ++t)
    for (int64_t b = 0; b < src[t].g.numel(); b += kChunk) chunks.emplace_back(t, b);
  // The calling thread's scratch, one entry per worker. A lambda naming a thread_local would reach
  // each worker's own (empty) instance, hence the reference taken here.
  thread_local std::vector<ThreadFind> scratch;
  std::vector<ThreadFind>& per_thread = scratch;
  per_thread.resize(std::max<size_t>(per_thread.size(), static_cast<size_t>(at::get_num_threads())));
  for (auto& f : per_thread) f.below = f.f.used = f.d.used = 0;
  // Each thread takes a contiguous run of chunks (chunks handed out one by one to whichever thread is
  // free measured 1.6 times slower), and with AVX-512 steps its two halves together, chunk c of the
  // first with chunk c of the second, as the 5-word updates do, with software prefetch
  // (bracket_pair_avx512): on the 2-core Xeon of 2026-12-02 (evening) a call on bench optim's set ran
  // 1.3-1.5x faster than one stream without prefetch, at 1 and 2 threads (on the AMD machine before,
  // two halves without prefetch had measured no faster).
  const auto lo_f = static_cast<float>(lo_v), hi_f = static_cast<float>(hi_v);
  const bool float_ends = static_cast<double>(lo_f) == lo_v && static_cast<double>(hi_f) == hi_v;
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    ThreadFind& found = per_thread[at::get_thread_num()];
    auto one = [&](int64_t c) {
      const int64_t b = chunks[c].second;  // a plain variable: C++17 lambdas capture no structured binding
      const AbsSource& s = src[chunks[c].first];
      const int64_t n_c = std::min(kChunk, s.g.numel() - b);
      AT_DISPATCH_FLOATING_TYPES(s.g.scalar_type(), "find_in_chunk", [&] {
        if constexpr (std::is_same_v<scalar_t, float>) {
          if (float_ends) return find_in_chunk<float, float>(s, b, n_c, lo_f, hi_f, found.f, found.below);
        }
        find_in_chunk<scalar_t, double>(s, b, n_c, lo_v, hi_v, found.d, found.below);
      });
    };
    auto fast = [&](int64_t c) { return float_ends && src[chunks[c].first].g.scalar_type() == torch::kFloat32; };
    if (!use_avx512()) {
      for (int64_t c = begin; c < end; ++c) one(c);
      return;
    }
    const int64_t mid = begin + (end - begin + 1) / 2;
    for (int64_t c = begin; c < mid; ++c) {
      const int64_t c1 = mid + (c - begin);
      if (c1 < end && fast(c) && fast(c1)) {
        find_in_pair(src[chunks[c].first], chunks[c].second, src[chunks[c1].first], chunks[c1].second, lo_f, hi_f,
                     found);
      } else {
        one(c);
        if (c1 < end) one(c1);
      }
    }
  });
  int64_t below = 0, kept_f = 0, kept_d = 0;
  for (const auto& f : per_thread) {
    below += f.below;
    kept_f += f.f.used;
    kept_d += f.d.used;
  }
  const int64_t rest = r - below;
  if (rest >= 0 && rest < kept_f + kept_d) {
    if (kept_d == 0) {  // all compared in float32: the bracket's ends are float32 values
      std::vector<std::pair<const float*, int64_t>> spans;
      for (const auto& f : per_thread) spans.emplace_back(f.f.values.data(), f.f.used);
      return select_many_kept<float>(spans, rest, static_cast<float>(lo_v), static_cast<float>(hi_v));
    }
    std::vector<double> widened;  // mixed precisions (rare): every kept value in double
    for (const auto& f : per_thread) widened.insert(widened.end(), f.f.values.data(), f.f.values.data() + f.f.used);
    std::vector<std::pair<const double*, int64_t>> spans = {{widened.data(), static_cast<int64_t>(widened.size())}};
    for (const auto& f : per_thread) spans.emplace_back(f.d.values.data(), f.d.used);
    return select_many_kept<double>(spans, rest, lo_v, hi_v);
  }
  g_bracket_misses.fetch_add(1, std::memory_order_relaxed);  // the bracket missed the rank
  return rth_smallest_abs_reference(src, r);
}

}  // namespace bs
