// One chunk of the order statistic's bracket pass (order_statistic.h): count the values below the
// bracket [lo, hi] and keep, in order, the values inside it (both ends included), where a value is |g|
// or |g + wd p| computed in the tensor's dtype T (as ATen's g + p * wd) and compared in C (T, or double
// where the bracket's ends are not exact in T). NaN compares false: neither below nor kept, so it
// counts as above the bracket, where a sort puts it. A portable loop, and for float32 a 16-wide AVX-512
// one with compressed stores where the CPU has it; both count and keep exactly the same values. Also
// the filter of the radix steps that finish the selection (keep_keys_*).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace bs {

// |g[k] + wd p[k]| (|g[k]| without p) in T.
template <class T>
inline T abs_value(const T* __restrict g, const T* __restrict p, T wd, int64_t k) {
  if (p == nullptr) return std::abs(g[k]);
  const T d = p[k] * wd;
  return std::abs(g[k] + d);
}

// Keeps the chunk's values in [lo, hi] in out[0, returned) (out has room for n + 16) and adds the
// number below lo to `below`. Branch-free: every value is stored, the next one overwrites it unless it
// was inside.
template <class T, class C, bool kDecay>
int64_t bracket_chunk_portable(const T* __restrict g, const T* __restrict p, T wd, int64_t n, C lo, C hi,
                               C* __restrict out, int64_t& below) {
  int64_t j = 0, b = 0;
  for (int64_t k = 0; k < n; ++k) {
    const C v = abs_value<T>(g, kDecay ? p : nullptr, wd, k);
    b += v < lo;
    out[j] = v;
    j += !(v < lo) & (v <= hi);
  }
  below += b;
  return j;
}

// The same, decayed where p is given: the form for callers that choose at run time.
template <class T, class C>
int64_t bracket_chunk_portable(const T* g, const T* p, T wd, int64_t n, C lo, C hi, C* out, int64_t& below) {
  return p ? bracket_chunk_portable<T, C, true>(g, p, wd, n, lo, hi, out, below)
           : bracket_chunk_portable<T, C, false>(g, p, wd, n, lo, hi, out, below);
}

// Values ahead of the AVX-512 pass that each 64-value step asks the memory for (4 KB of float32; 512 to
// 4096 measured the same). The hardware prefetchers alone kept fewer misses in flight: on the Xeon we
// measured on, one core's pass ran 1.3-1.6x a plain read of the same values before. bench optim's
// read-only baseline reads with the same distance.
constexpr int64_t kBracketPrefetch = 1024;

// The same for float32 with AVX-512F (p null: |g|). Call only where use_avx512() (cpu_loop.h); on other
// architectures it is the portable loop.
int64_t bracket_chunk_avx512(const float* g, const float* p, float wd, int64_t n, float lo, float hi, float* out,
                             int64_t& below);

// Two chunks' values at once (n0 of g0, p0, wd0 and n1 of g1, p1, wd1), stepped together 64 values of
// one, then of the other (two streams in flight for the prefetchers); out has room for n0 + n1 + 16.
// The kept values come out in another order than two calls of bracket_chunk_avx512 give.
int64_t bracket_pair_avx512(const float* g0, const float* p0, float wd0, int64_t n0, const float* g1, const float* p1,
                            float wd1, int64_t n1, float lo, float hi, float* out, int64_t& below);

// The radix steps' filter: keeps, in order, the n keys (K: uint32_t or uint64_t, read from `from`'s
// bytes) in [lo, hi] in out[0, returned); out has room for n + 16. Blocks of 64 are tested as vectors
// first (most keep nothing), then stored branch-free.
template <class K>
int64_t keep_keys_portable(const void* from, int64_t n, K lo, K hi, K* __restrict out) {
  const auto* bytes = static_cast<const char*>(from);
  auto key_at = [&](int64_t k) {
    K x;
    std::memcpy(&x, bytes + k * static_cast<int64_t>(sizeof(K)), sizeof x);
    return x;
  };
  int64_t j = 0;
  for (int64_t b = 0; b < n; b += 64) {
    const int64_t e = b + 64 < n ? b + 64 : n;
    bool any = false;
    for (int64_t k = b; k < e; ++k) {
      const K x = key_at(k);
      any |= (x >= lo) & (x <= hi);
    }
    if (!any) continue;
    for (int64_t k = b; k < e; ++k) {
      const K x = key_at(k);
      out[j] = x;
      j += (x >= lo) & (x <= hi);
    }
  }
  return j;
}

// The same for 32-bit keys with AVX-512F: one unsigned compare of x - lo against hi - lo and a
// compressed store per 16 keys. Call only where use_avx512().
int64_t keep_keys_avx512(const void* from, int64_t n, uint32_t lo, uint32_t hi, uint32_t* out);

}  // namespace bs
