// small_gemm.h's kernel: C is computed in blocks of up to 12 rows by up to 64 columns (four 16-float
// vectors; 6 rows where there are more than two vectors), the block's accumulators held in registers
// while k runs over the block's range: per k, the B row's vectors are loaded once and each row's A
// element is broadcast into one fused multiply-add per vector. Column blocks are the outer loop, so a
// K x 64 panel of B stays in cache while the rows pass. Compiled for AVX-512F by function attributes
// (the rest of the build targets baseline x86-64) and called only after the CPU check.
#include "small_gemm.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "simd_loop.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BS_SMALL_GEMM_AVX512 1
#endif

namespace bs::small_gemm {

#ifdef BS_SMALL_GEMM_AVX512

namespace {

// The operands of one product, as product() takes them (B with unit column stride).
struct Operands {
  const float* a;
  int64_t a_row, a_col;
  const float* b;
  int64_t b_row;
  float* c;
  int64_t ldc;
  bool accumulate;
};

// Rows [i0, i0 + MR) by columns [n0, n0 + 16 NV) of C over k in [k0, k1); the last vector's lanes are
// `last` (a partial vector at the right edge of C).
template <int MR, int NV>
__attribute__((target("avx512f"))) void block(const Operands& o, int64_t i0, int64_t n0, int64_t k0, int64_t k1,
                                              __mmask16 last) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* a = o.a + i0 * o.a_row;
  const float* b = o.b + n0;
  for (int64_t k = k0; k < k1; ++k) {
    __m512 bv[NV];
    const float* bk = b + k * o.b_row;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v + 1 < NV ? _mm512_loadu_ps(bk + 16 * v) : _mm512_maskz_loadu_ps(last, bk + 16 * v);
    const float* ak = a + k * o.a_col;
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(ak[r * o.a_row]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    float* cr = o.c + (i0 + r) * o.ldc + n0;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v + 1 < NV ? static_cast<__mmask16>(0xffff) : last;
      __m512 x = acc[r][v];
      if (o.accumulate) x = _mm512_add_ps(_mm512_maskz_loadu_ps(m, cr + 16 * v), x);
      _mm512_mask_storeu_ps(cr + 16 * v, m, x);
    }
  }
}

constexpr int kMaxRows = 12;
using Block = void (*)(const Operands&, int64_t, int64_t, int64_t, int64_t, __mmask16);

template <int MR, int... NV>
constexpr std::array<Block, 4> row_of(std::integer_sequence<int, NV...>) {
  return {&block<MR, NV + 1>...};
}
template <int... MR>
constexpr std::array<std::array<Block, 4>, kMaxRows> table_of(std::integer_sequence<int, MR...>) {
  return {row_of<MR + 1>(std::make_integer_sequence<int, 4>())...};
}
// kBlocks[rows - 1][vectors - 1].
constexpr auto kBlocks = table_of(std::make_integer_sequence<int, kMaxRows>());

// The first w lanes of a vector (all sixteen from w = 16 on).
__mmask16 lanes_mask(int64_t w) { return static_cast<__mmask16>(w >= 16 ? 0xffff : (1u << w) - 1); }

// GCC 12's AVX-512 shuffle intrinsics pass an `undefined` vector (initialised from itself) that
// -Wmaybe-uninitialized reports once they are inlined (GCC bug 105593); no lane of one is used.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The sixteen rows r[0..16) of a 16 x 16 block become its sixteen columns (r[i] lane j <- r[j] lane i):
// pairs of rows interleaved, then pairs of pairs, then 128- and 256-bit quarters exchanged.
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {  // i = 4 g + j: rows 8 g + j and 8 g + j + 4
    const int g = i / 4, j = i % 4;
    t[8 * g + j] = _mm512_shuffle_f32x4(r[8 * g + j], r[8 * g + j + 4], 0x88);
    t[8 * g + j + 4] = _mm512_shuffle_f32x4(r[8 * g + j], r[8 * g + j + 4], 0xDD);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}

// out[k N + n] = B(k, n) = b[k + n b_col] for B stored by columns (attention's keys and values read
// transposed: a head's row of d values per position n, rows 3 H d apart) in 16 x 16 blocks: sixteen
// rows' sixteen k values loaded, transposed in registers, stored as sixteen packed rows. On the Zen 5 VM
// (64 heads' 32 x 128 keys, hot) 0.15-0.19 ns a value, against 0.38-0.44 for the 16-lane gathers this
// replaced; element by element, the rows' lines thrash a few cache sets.
__attribute__((target("avx512f"))) void pack(const float* b, int64_t b_col, int64_t K, int64_t N, float* out) {
  for (int64_t n0 = 0; n0 < N; n0 += 16) {
    const int64_t w = std::min<int64_t>(16, N - n0);
    const __mmask16 m = lanes_mask(w);
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      const int64_t kw = std::min<int64_t>(16, K - k0);
      const __mmask16 mk = lanes_mask(kw);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < w ? _mm512_maskz_loadu_ps(mk, b + (n0 + i) * b_col + k0) : _mm512_setzero_ps();
      transpose16(r);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        if (i < kw) _mm512_mask_storeu_ps(out + (k0 + i) * N + n0, m, r[i]);
    }
  }
}

#pragma GCC diagnostic pop

}  // namespace

bool available() { return use_avx512(); }
bool takes(int64_t N, int64_t K) { return N <= 1024 && K <= 1024 && available(); }

void product(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_row, int64_t a_col, const float* b,
             int64_t b_row, int64_t b_col, float* c, int64_t ldc, bool accumulate, Triangle triangle) {
  if (M <= 0 || N <= 0) return;
  thread_local std::vector<float> packed;  // B with unit column stride, where it has none
  if (b_col != 1) {
    TORCH_CHECK(b_row == 1 || K == 1, "small_gemm: B needs one unit stride, got (", b_row, ", ", b_col, ")");
    packed.resize(static_cast<size_t>(K * N));
    pack(b, b_col, K, N, packed.data());
    b = packed.data(), b_row = N;
  }
  // The triangles as stated hold for square products only; elsewhere every term is computed.
  if ((triangle == Triangle::ResultLower && M != N) || (triangle != Triangle::ResultLower && M != K))
    triangle = Triangle::None;
  const Operands o{a, a_row, a_col, b, b_row, c, ldc, accumulate};
  // Column blocks of 64, or 32 where only C's lower triangle is wanted (more blocks lie wholly above it).
  const int64_t columns = triangle == Triangle::ResultLower ? 32 : 64;
  for (int64_t n0 = 0; n0 < N; n0 += columns) {
    const int64_t width = std::min<int64_t>(columns, N - n0), vectors = (width + 15) / 16;
    const __mmask16 last = lanes_mask(width - 16 * (vectors - 1));  // the last vector's lanes
    const int64_t rows = vectors <= 2 ? kMaxRows : 6;
    for (int64_t i0 = 0; i0 < M; i0 += rows) {
      const int64_t i1 = std::min(M, i0 + rows);
      if (triangle == Triangle::ResultLower && n0 >= i1) continue;  // wholly above the diagonal
      const int64_t k0 = triangle == Triangle::AUpper ? std::min(i0, K) : 0;
      const int64_t k1 = triangle == Triangle::ALower ? std::min(i1, K) : K;
      kBlocks[static_cast<size_t>(i1 - i0 - 1)][static_cast<size_t>(vectors - 1)](o, i0, n0, k0, k1, last);
    }
  }
}

#else

bool available() { return false; }
bool takes(int64_t, int64_t) { return false; }
void product(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t,
             bool, Triangle) {
  TORCH_INTERNAL_ASSERT(false, "small_gemm::product called where available() is false");
}

#endif

}  // namespace bs::small_gemm
