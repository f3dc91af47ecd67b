// bracket_pass.h's AVX-512 loop: per 16 values, one compare for "below" (counted in per-lane counters
// by a masked add), one masked compare for "inside", and the kept values compressed in a register and
// stored with a mask of as many lanes as were kept (a full 16-lane store of mostly unkept lanes, per 16
// values, measured 10-18 % slower on one core; a compressed store straight to memory is microcoded on
// some CPUs), four vectors per iteration so the stores' index chain does not bound it. Compiled for AVX-512F by a
// function attribute (the rest of the build targets baseline x86-64) and called only after a CPUID check;
// the file is compiled without floating-point contraction, so g + p * wd rounds twice, as ATen's does.
// keep_keys_avx512 is the radix steps' filter in the same form.
#include "bracket_pass.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BS_HAVE_AVX512_KERNEL 1
#endif

namespace bs {

#ifdef BS_HAVE_AVX512_KERNEL

namespace {

template <bool kDecay>
__attribute__((target("avx512f"))) int64_t keep_16s(const float* g, const float* p, float wd, int64_t n, float lo,
                                                    float hi, float* out, int64_t& below) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), vwd = _mm512_set1_ps(wd);
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), one = _mm512_set1_epi32(1);
  int64_t j = 0, k = 0;
  // Per-lane counts of the values below: 32 bits each, n / 16 per lane at most (n < 2^35 values).
  __m512i below_lanes = _mm512_setzero_si512();
  for (; k + 64 <= n; k += 64) {
    __m512 v[4];
    __mmask16 in[4];
    for (int u = 0; u < 4; ++u) {
      __m512 x = _mm512_loadu_ps(g + k + 16 * u);
      if constexpr (kDecay) x = _mm512_add_ps(x, _mm512_mul_ps(_mm512_loadu_ps(p + k + 16 * u), vwd));
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
  alignas(64) int32_t lanes[16];  // (GCC 12's _mm512_reduce_add_epi32 warns of its own undefined vector)
  _mm512_store_si512(lanes, below_lanes);
  for (const int32_t c : lanes) below += c;
  return j +
         bracket_chunk_portable<float, float, kDecay>(g + k, p ? p + k : nullptr, wd, n - k, lo, hi, out + j, below);
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

#else

int64_t keep_keys_avx512(const void* from, int64_t n, uint32_t lo, uint32_t hi, uint32_t* out) {
  return keep_keys_portable<uint32_t>(from, n, lo, hi, out);
}

int64_t bracket_chunk_avx512(const float* g, const float* p, float wd, int64_t n, float lo, float hi, float* out,
                             int64_t& below) {
  return p ? bracket_chunk_portable<float, float, true>(g, p, wd, n, lo, hi, out, below)
           : bracket_chunk_portable<float, float, false>(g, p, wd, n, lo, hi, out, below);
}

#endif

}  // namespace bs
