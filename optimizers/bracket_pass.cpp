// bracket_pass.h's AVX-512 loop: per 16 values, one compare for "below" (counted in per-lane counters
// by a masked add), one masked compare for "inside", and the kept values compressed in a register and
// stored with a mask of as many lanes as were kept (a full 16-lane store of mostly unkept lanes, per 16
// values, measured 10-18 % slower on one core; a compressed store straight to memory is microcoded on
// some CPUs), four vectors per iteration so the stores' index chain does not bound it, each step asking
// for the values 4 KB ahead (software prefetch); bracket_pair_avx512 steps two chunks together, 64
// values of each in turn (two streams in flight). Compiled for AVX-512F by a function attribute (the rest of the build
// targets baseline x86-64) and called only after a CPUID check; the file is compiled without floating-point
// contraction, so g + p * wd rounds twice, as ATen's does. keep_keys_avx512 is the radix steps' filter in the same
// form.
#include "bracket_pass.h"

#include <algorithm>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BS_HAVE_AVX512_KERNEL 1
#endif

namespace bs {

#ifdef BS_HAVE_AVX512_KERNEL

namespace {

// The constants of one stream of the pass.
struct Stream {
  const float* g;
  const float* p;
  __m512 wd;
};

// 64 values of stream s from k: "below" counted in below_lanes, the kept ones stored at out + j.
template <bool kDecay>
__attribute__((target("avx512f"), always_inline)) inline void keep_64(const Stream& s, int64_t k, __m512 vlo,
                                                                      __m512 vhi, float* out, int64_t& j,
                                                                      __m512i& below_lanes) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), one = _mm512_set1_epi32(1);
  for (int u = 0; u < 4; ++u) {  // a hint: no fault past the end of the values
    _mm_prefetch(reinterpret_cast<const char*>(s.g + k + kBracketPrefetch + 16 * u), _MM_HINT_T0);
    if constexpr (kDecay) _mm_prefetch(reinterpret_cast<const char*>(s.p + k + kBracketPrefetch + 16 * u), _MM_HINT_T0);
  }
  __m512 v[4];
  __mmask16 in[4];
  for (int u = 0; u < 4; ++u) {
    __m512 x = _mm512_loadu_ps(s.g + k + 16 * u);
    if constexpr (kDecay) x = _mm512_add_ps(x, _mm512_mul_ps(_mm512_loadu_ps(s.p + k + 16 * u), s.wd));
    v[u] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), absmask));
    const __mmask16 b = _mm512_cmp_ps_mask(v[u], vlo, _CMP_LT_OQ);
    below_lanes = _mm512_mask_add_epi32(below_lanes, b, below_lanes, one);
    in[u] = _mm512_mask_cmp_ps_mask(static_cast<__mmask16>(~b), v[u], vhi, _CMP_LE_OQ);
  }
  for (int u = 0; u < 4; ++u) {
    const int kept = __builtin_popcount(static_cast<unsigned>(in[u]));
    _mm512_mask_storeu_ps(out + j, static_cast<__mmask16>((1u << kept) - 1), _mm512_maskz_compress_ps(in[u], v[u]));
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
__attribute__((target("avx512f"))) int64_t keep_16s(const float* g, const float* p, float wd, int64_t n, float lo,
                                                    float hi, float* out, int64_t& below) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  const Stream s{g, p, _mm512_set1_ps(wd)};
  int64_t j = 0, k = 0;
  __m512i below_lanes = _mm512_setzero_si512();
  for (; k + 64 <= n; k += 64) keep_64<kDecay>(s, k, vlo, vhi, out, j, below_lanes);
  below += lanes_sum(below_lanes);
  return j +
         bracket_chunk_portable<float, float, kDecay>(g + k, p ? p + k : nullptr, wd, n - k, lo, hi, out + j, below);
}

// Two streams stepped together, 64 values of one, then of the other, over n values of each (n a
// multiple of 64).
template <bool kDecay0, bool kDecay1>
__attribute__((target("avx512f"))) int64_t keep_pairs(const Stream& s0, const Stream& s1, int64_t n, float lo, float hi,
                                                      float* out, int64_t& below) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  int64_t j = 0;
  __m512i below_lanes = _mm512_setzero_si512();
  for (int64_t k = 0; k < n; k += 64) {
    keep_64<kDecay0>(s0, k, vlo, vhi, out, j, below_lanes);
    keep_64<kDecay1>(s1, k, vlo, vhi, out, j, below_lanes);
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
  return p ? keep_16s<true>(g, p, wd, n, lo, hi, out, below) : keep_16s<false>(g, p, wd, n, lo, hi, out, below);
}

__attribute__((target("avx512f"))) int64_t bracket_pair_avx512(const float* g0, const float* p0, float wd0, int64_t n0,
                                                               const float* g1, const float* p1, float wd1, int64_t n1,
                                                               float lo, float hi, float* out, int64_t& below) {
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
  return p ? bracket_chunk_portable<float, float, true>(g, p, wd, n, lo, hi, out, below)
           : bracket_chunk_portable<float, float, false>(g, p, wd, n, lo, hi, out, below);
}

int64_t bracket_pair_avx512(const float* g0, const float* p0, float wd0, int64_t n0, const float* g1, const float* p1,
                            float wd1, int64_t n1, float lo, float hi, float* out, int64_t& below) {
  const int64_t j = bracket_chunk_avx512(g0, p0, wd0, n0, lo, hi, out, below);
  return j + bracket_chunk_avx512(g1, p1, wd1, n1, lo, hi, out + j, below);
}

#endif

}  // namespace bs
