// exp(x) for float in plain arithmetic the compiler vectorizes (no calls, no branches: selects), for
// the row kernels' loops: x = n ln2 + r with |r| <= ln2/2 (Cody and Waite's two-part ln2, the first
// part exact in n * ln2_hi for |n| < 2^8), e^r by its Taylor polynomial to r^7 (truncation below
// 2^-27 relative), times 2^n built from the exponent bits in two factors so that n from -150 to 128
// stays normal in each (the last multiplication rounds once, into subnormals or infinity). Within one
// ulp of exp over [-104, 89] (tests: ExpPoly.*); exp(x) = 0 below and inf above, NaN stays NaN.
// Selects compare floats: a loop over it vectorizes for the baseline target only with
// -fno-trapping-math (the kernels' files set it; AVX-512's masked moves need nothing).
#pragma once
#include <cstdint>
#include <cstring>

namespace bs::ops::detail {

__attribute__((always_inline)) inline float exp_poly(float x) {
  x = x < -104.0f ? -104.0f : x;  // exp(-104) rounds to 0, exp(89) to inf; NaN passes both
  x = x > 89.0f ? 89.0f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: x log2(e) + kRound rounds to an integer n
  const float t = x * 1.44269504088896341f + kRound;
  int32_t tb, rb;
  std::memcpy(&tb, &t, sizeof tb);
  std::memcpy(&rb, &kRound, sizeof rb);
  const int32_t n = tb - rb;  // n in the low mantissa bits
  const float nf = t - kRound;
  const float r = (x - nf * 0.693145751953125f) - nf * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t n1 = n >> 1;  // (NaN's bits give any n; the product stays NaN, shifted unsigned)
  const uint32_t b1 = static_cast<uint32_t>(n1 + 127) << 23, b2 = static_cast<uint32_t>(n - n1 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  return p * s1 * s2;
}

}  // namespace bs::ops::detail
