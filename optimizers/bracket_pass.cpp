// bracket_pass.h's AVX-512 loop: per 16 values, on their bit patterns (|x| as an integer: for
// non-negative floats the order of the values is that of their bit patterns, NaN above infinity), d =
// key - lo's key, whose top bit is "below" (added to per-lane counters), and d <= hi's key - lo's key
// (unsigned, wrapping below lo) is "inside": one compare into a mask register per 16 values where the
// float form took two and a masked add. On the Zen 5 VM of 2026-12-03: 8-16 % less time per value in
// cache (one core); out of cache, where the memory bounds it, 2-3 % at one thread and 0-1 % at two
// (paired passes over 33.6M values). The kept values are compressed in a register and stored with a
// mask of as many lanes as were kept (a full 16-lane store of mostly unkept lanes, per 16 values,
// measured 10-18 % slower on one core of a Xeon; a compressed store straight to memory is microcoded
// on some CPUs), four vectors per iteration so the stores' index chain does not bound it, each step
// asking for the values 4 KB ahead (software prefetch); bracket_pair_avx512 steps two chunks together,
// 64 values of each in turn (two streams in flight). Measured on the Zen 5 VM and not taken: a branch
// that skips the store of 16 values with none kept (15-40 % faster in cache, 2x slower out of it: at a
// bracket keeping ~2 % of the values, a quarter of the groups keep one), the four masks of an iteration
// moved to one 64-bit register (slower), and four chunks stepped together (no faster than two).
// Compiled for AVX-512F and BMI2 by a function attribute (the rest of the build targets baseline
// x86-64) and called only after a CPUID check; the file is compiled without floating-point
// contraction, so g + p * wd rounds twice, as ATen's does. A bracket that is not 0 <= lo <= hi with
// neither NaN goes to the portable loop. keep_keys_avx512 is the radix steps' filter in the same form.
#include "bracket_pass.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BS_HAVE_AVX512_KERNEL 1
#endif

namespace bs {

namespace {

// Two chunks in turn, each by bracket_chunk_avx512.
int64_t chunks_in_turn(const float* g0, const float* p0, float wd0, int64_t n0, const float* g1, const float* p1,
                       float wd1, int64_t n1, float lo, float hi, float* out, int64_t& below) {
  const int64_t j = bracket_chunk_avx512(g0, p0, wd0, n0, lo, hi, out, below);
  return j + bracket_chunk_avx512(g1, p1, wd1, n1, lo, hi, out + j, below);
}

}  // namespace

#ifdef BS_HAVE_AVX512_KERNEL

namespace {

// The constants of one stream of the pass.
struct Stream {
  const float* g;
  const float* p;
  __m512 wd;
};

// The bracket as bit patterns: lo's, and hi's less lo's.
struct Bracket {
  __m512i lo, width;
};

// Whether the vector loop takes the bracket: 0 <= lo <= hi, neither NaN (what the order statistic
// asks; -0 as lo is +0).
bool vector_bracket(float lo, float hi) { return lo >= 0 && lo <= hi; }

// The bracket's keys, for a bracket vector_bracket takes.
__attribute__((target("avx512f"))) Bracket bracket_keys(float lo, float hi) {
  uint32_t lo_k, hi_k;
  lo = lo > 0 ? lo : 0.0F;  // -0: +0's bit pattern
  std::memcpy(&lo_k, &lo, sizeof lo_k);
  std::memcpy(&hi_k, &hi, sizeof hi_k);
  return {_mm512_set1_epi32(static_cast<int>(lo_k)), _mm512_set1_epi32(static_cast<int>(hi_k - lo_k))};
}

// 64 values of stream s from k: "below" counted in below_lanes, the kept ones stored at out + j.
template <bool kDecay>
__attribute__((target("avx512f,bmi2"), always_inline)) inline void keep_64(const Stream& s, int64_t k,
                                                                           const Bracket& br, float* out, int64_t& j,
                                                                           __m512i& below_lanes) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  for (int u = 0; u < 4; ++u) {  // a hint: no fault past the end of the values
    _mm_prefetch(reinterpret_cast<const char*>(s.g + k + kBracketPrefetch + 16 * u), _MM_HINT_T0);
    if constexpr (kDecay) _mm_prefetch(reinterpret_cast<const char*>(s.p + k + kBracketPrefetch + 16 * u), _MM_HINT_T0);
  }
  __m512i key[4];
  __mmask16 in[4];
  for (int u = 0; u < 4; ++u) {
    __m512 x = _mm512_loadu_ps(s.g + k + 16 * u);
    if constexpr (kDecay) x = _mm512_add_ps(x, _mm512_mul_ps(_mm512_loadu_ps(s.p + k + 16 * u), s.wd));
    key[u] = _mm512_and_si512(_mm512_castps_si512(x), absmask);
    const __m512i d = _mm512_sub_epi32(key[u], br.lo);  // top bit set: below lo (keys are under 2^31)
    // (the zero-masked form with every lane set: GCC 12's plain one warns of its own undefined vector)
    below_lanes = _mm512_add_epi32(below_lanes, _mm512_maskz_srli_epi32(static_cast<__mmask16>(0xffff), d, 31));
    in[u] = _mm512_cmple_epu32_mask(d, br.width);
  }
  for (int u = 0; u < 4; ++u) {
    const unsigned kept = __builtin_popcount(static_cast<unsigned>(in[u]));
    _mm512_mask_storeu_epi32(out + j, static_cast<__mmask16>(_bzhi_u32(0xffffU, kept)),
                             _mm512_maskz_compress_epi32(in[u], key[u]));
    j += kept;
  }
}

// Per-lane counts of the values below: 32 bits each, n / 16 per lane at most (n < 2^35 values).
__attribute__((target("avx512f"))) int64_t lanes_sum(__m512i below_lanes) {
  alignas(64) int32_t lanes[16];  // (GCC 12's _mm512_reduce_add_epi32 warns of its own undefined vector)
  _mm512_store_si512(lanes, below_lanes);
  int64_t sum = 0;
  for (const int32_t c : lanes) sum += c;
  return sum;
}

template <bool kDecay>
__attribute__((target("avx512f,bmi2"))) int64_t keep_16s(const float* g, const float* p, float wd, int64_t n, float lo,
                                                         float hi, float* out, int64_t& below) {
  const Bracket br = bracket_keys(lo, hi);
  const Stream s{g, p, _mm512_set1_ps(wd)};
  int64_t j = 0, k = 0;
  __m512i below_lanes = _mm512_setzero_si512();
  for (; k + 64 <= n; k += 64) keep_64<kDecay>(s, k, br, out, j, below_lanes);
  below += lanes_sum(below_lanes);
  return j +
         bracket_chunk_portable<float, float, kDecay>(g + k, p ? p + k : nullptr, wd, n - k, lo, hi, out + j, below);
}

// Two streams stepped together, 64 values of one, then of the other, over n values of each (n a
// multiple of 64).
template <bool kDecay0, bool kDecay1>
__attribute__((target("avx512f,bmi2"))) int64_t keep_pairs(const Stream& s0, const Stream& s1, int64_t n, float lo,
                                                           float hi, float* out, int64_t& below) {
  const Bracket br = bracket_keys(lo, hi);
  int64_t j = 0;
  __m512i below_lanes = _mm512_setzero_si512();
  for (int64_t k = 0; k < n; k += 64) {
    keep_64<kDecay0>(s0, k, br, out, j, below_lanes);
    keep_64<kDecay1>(s1, k, br, out, j, below_lanes);
  }
  below += lanes_sum(below_lanes);
  return j;
}

}  // namespace

__attribute__((target("avx512f"))) int64_t keep_keys_avx512(const void* from, int64_t n, uint32_t lo, uint32_t hi,
                                                            uint32_t* out) {
  const auto* x = static_cast<const char*>(from);
  const __m512i vlo = _mm512_set1_epi32(static_cast<int>(lo)), width = _mm512_set1_epi32(static_cast<int>(hi - lo));
  int64_t j = 0, k = 0;
  for (; k + 16 <= n; k += 16) {  // lo <= x <= hi  <=>  x - lo <= hi - lo (unsigned, wrapping below lo)
    const __m512i v = _mm512_loadu_si512(x + 4 * k);
    const __mmask16 in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(v, vlo), width);
    _mm512_storeu_si512(out + j, _mm512_maskz_compress_epi32(in, v));
    j += __builtin_popcount(static_cast<unsigned>(in));
  }
  return j + keep_keys_portable<uint32_t>(x + 4 * k, n - k, lo, hi, out + j);
}

int64_t bracket_chunk_avx512(const float* g, const float* p, float wd, int64_t n, float lo, float hi, float* out,
                             int64_t& below) {
  if (!vector_bracket(lo, hi)) return bracket_chunk_portable<float, float>(g, p, wd, n, lo, hi, out, below);
  return p ? keep_16s<true>(g, p, wd, n, lo, hi, out, below) : keep_16s<false>(g, p, wd, n, lo, hi, out, below);
}

__attribute__((target("avx512f"))) int64_t bracket_pair_avx512(const float* g0, const float* p0, float wd0, int64_t n0,
                                                               const float* g1, const float* p1, float wd1, int64_t n1,
                                                               float lo, float hi, float* out, int64_t& below) {
  if (!vector_bracket(lo, hi)) return chunks_in_turn(g0, p0, wd0, n0, g1, p1, wd1, n1, lo, hi, out, below);
  const int64_t n = std::min(n0, n1) / 64 * 64;
  const Stream s0{g0, p0, _mm512_set1_ps(wd0)}, s1{g1, p1, _mm512_set1_ps(wd1)};
  int64_t j = p0 ? (p1 ? keep_pairs<true, true>(s0, s1, n, lo, hi, out, below)
                       : keep_pairs<true, false>(s0, s1, n, lo, hi, out, below))
                 : (p1 ? keep_pairs<false, true>(s0, s1, n, lo, hi, out, below)
                       : keep_pairs<false, false>(s0, s1, n, lo, hi, out, below));
  j += bracket_chunk_avx512(g0 + n, p0 ? p0 + n : nullptr, wd0, n0 - n, lo, hi, out + j, below);
  return j + bracket_chunk_avx512(g1 + n, p1 ? p1 + n : nullptr, wd1, n1 - n, lo, hi, out + j, below);
}

#else

int64_t keep_keys_avx512(const void* from, int64_t n, uint32_t lo, uint32_t hi, uint32_t* out) {
  return keep_keys_portable<uint32_t>(from, n, lo, hi, out);
}

int64_t bracket_chunk_avx512(const float* g, const float* p, float wd, int64_t n, float lo, float hi, float* out,
                             int64_t& below) {
  return bracket_chunk_portable<float, float>(g, p, wd, n, lo, hi, out, below);
}

int64_t bracket_pair_avx512(const float* g0, const float* p0, float wd0, int64_t n0, const float* g1, const float* p1,
                            float wd1, int64_t n1, float lo, float hi, float* out, int64_t& below) {
  return chunks_in_turn(g0, p0, wd0, n0, g1, p1, wd1, n1, lo, hi, out, below);
}

#endif

}  // namespace bs
