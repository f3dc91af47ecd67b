// all_finite's pass: each value's bits against the exponent mask, OR-ed over a thread's share (no
// floating-point compare and no early exit, so that the loop vectorizes; the answer is the same in any
// order and variant). scan_gradients' pass: the gradients cut into pieces of kPiece values (by their
// sizes alone), each piece's sum of squares in float64 in sixteen lanes added pairwise, the pieces'
// sums added in order; a float32 value's square is exact in float64, and this file is compiled with
// -ffp-contract=off, so both loop variants give the same bits (float64 values too).
#include "finite_check.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "simd_loop.h"

namespace bs {

namespace {

template <class T, class U>
bool any_nonfinite(const T* x, int64_t n, U exponent) {
  U seen = 0;
  for (int64_t i = 0; i < n; ++i) {
    U bits;
    std::memcpy(&bits, x + i, sizeof bits);
    seen |= static_cast<U>((bits & exponent) == exponent);
  }
  return seen != 0;
}

template <class T, class U>
bool finite_values(const torch::Tensor& t, U exponent) {
  const auto c = t.contiguous();
  const T* x = c.data_ptr<T>();
  std::atomic<bool> bad{false};
  at::parallel_for(0, c.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    bool found = false;
    in_variant([&] { found = any_nonfinite(x + begin, end - begin, exponent); });
    if (found) bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load(std::memory_order_relaxed);
}

constexpr int64_t kPiece = int64_t{1} << 15;

// Sixteen lanes, lane l adding the squares of values l, l + 16, ... (the tail's in lanes 0...), then
// added pairwise.
template <class T>
double sum_squares(const T* x, int64_t n) {
  double lanes[16] = {};
  int64_t k = 0;
  for (; k + 16 <= n; k += 16)
    for (int l = 0; l < 16; ++l) {
      const auto v = static_cast<double>(x[k + l]);
      lanes[l] += v * v;
    }
  for (int l = 0; k < n; ++k, ++l) {
    const auto v = static_cast<double>(x[k]);
    lanes[l] += v * v;
  }
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) lanes[j] += lanes[j + w];
  return lanes[0];
}

// Whether our passes take t: a float32 or float64 contiguous CPU tensor with values.
bool ours(const torch::Tensor& t) {
  return t.defined() && t.numel() > 0 && t.device().is_cpu() && t.layout() == torch::kStrided && t.is_contiguous() &&
         (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64);
}

struct Piece {
  size_t tensor;
  int64_t begin, end;
};

// The pieces of the tensors ours() takes, in order.
std::vector<Piece> pieces_of(const std::vector<torch::Tensor>& ts) {
  std::vector<Piece> pieces;
  for (size_t i = 0; i < ts.size(); ++i)
    if (ours(ts[i]))
      for (int64_t b = 0; b < ts[i].numel(); b += kPiece) pieces.push_back({i, b, std::min(ts[i].numel(), b + kPiece)});
  return pieces;
}

}  // namespace

GradientScan scan_gradients(const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> plain(grads.size());
  for (size_t i = 0; i < grads.size(); ++i)
    if (grads[i].defined() && grads[i].numel() > 0)
      plain[i] = grads[i].is_contiguous() ? grads[i] : grads[i].contiguous();
  const std::vector<Piece> pieces = pieces_of(plain);
  std::vector<double> piece_sums(pieces.size());
  at::parallel_for(0, static_cast<int64_t>(pieces.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const Piece& p = pieces[static_cast<size_t>(q)];
      const torch::Tensor& t = plain[p.tensor];
      double& sum = piece_sums[static_cast<size_t>(q)];
      in_variant([&] {
        sum = t.scalar_type() == torch::kFloat32 ? sum_squares(t.data_ptr<float>() + p.begin, p.end - p.begin)
                                                 : sum_squares(t.data_ptr<double>() + p.begin, p.end - p.begin);
      });
    }
  });
  std::vector<double> sums(grads.size(), 0.0);
  for (size_t q = 0; q < pieces.size(); ++q) sums[pieces[q].tensor] += piece_sums[q];
  GradientScan out;
  double total = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const torch::Tensor& t = plain[i];
    if (!t.defined()) continue;
    if (!ours(t)) {  // through LibTorch
      const double norm = t.norm().item<double>();
      sums[i] = norm * norm;
    }
    // A non-finite sum is a non-finite value, or (float64 values, or LibTorch's norm) an overflow.
    if (!std::isfinite(sums[i]) && out.first_nonfinite < 0 && !all_finite(t))
      out.first_nonfinite = static_cast<int64_t>(i);
    total += sums[i];
  }
  out.norm = std::sqrt(total);
  return out;
}

double clip_coefficient(const std::vector<torch::Tensor>& grads, double norm, double max_norm) {
  const bool float32 = std::all_of(grads.begin(), grads.end(), [](const torch::Tensor& g) {
    return !g.defined() || g.scalar_type() == torch::kFloat32;
  });
  // LibTorch: max_norm / (total_norm + 1e-6) as a tensor of the norm's dtype, then clamp(max = 1),
  // which keeps NaN (std::min(c, 1) returns c where c is NaN).
  if (float32) {
    const float c = static_cast<float>(max_norm) / (static_cast<float>(norm) + static_cast<float>(1e-6));
    return std::min(c, 1.0F);
  }
  return std::min(max_norm / (norm + 1e-6), 1.0);
}

void scale_gradients(const std::vector<torch::Tensor>& grads, double coefficient) {
  if (coefficient == 1.0) return;
  const torch::NoGradGuard no_grad;
  const std::vector<Piece> pieces = pieces_of(grads);
  for (const auto& g : grads)
    if (g.defined() && g.numel() > 0 && !ours(g)) g.mul_(coefficient);
  at::parallel_for(0, static_cast<int64_t>(pieces.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const Piece& p = pieces[static_cast<size_t>(q)];
      const torch::Tensor& t = grads[p.tensor];
      if (t.scalar_type() == torch::kFloat32) {
        float* x = t.data_ptr<float>();
        const auto c = static_cast<float>(coefficient);
        elements([=](int64_t k) { x[k] *= c; }, p.begin, p.end);
      } else {
        double* x = t.data_ptr<double>();
        elements([=](int64_t k) { x[k] *= coefficient; }, p.begin, p.end);
      }
    }
  });
}

bool all_finite(const torch::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return true;
  if (t.device().is_cpu() && t.layout() == torch::kStrided) {
    if (t.scalar_type() == torch::kFloat32) return finite_values<float, uint32_t>(t, 0x7f800000u);
    if (t.scalar_type() == torch::kFloat64) return finite_values<double, uint64_t>(t, 0x7ff0000000000000ull);
  }
  return torch::isfinite(t).all().item<bool>();
}

}  // namespace bs
