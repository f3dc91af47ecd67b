// The words that name the dtypes a Session takes (--dtype, Python's dtype=), in one table.
#pragma once
#include <torch/torch.h>

#include "words.h"

namespace bs {

inline const Words<torch::Dtype>& dtype_words() {
  static const Words<torch::Dtype> w = {{"float32", torch::kFloat32}, {"float64", torch::kFloat64}};
  return w;
}

// A dtype as the CLI and PyTorch spell it: dtype_words()' word, else "float16", "bfloat16" (the dtypes
// a Session does not take but a user's tensors may have), else LibTorch's name.
inline const char* dtype_name(torch::Dtype d) {
  for (const auto& [word, dtype] : dtype_words())
    if (dtype == d) return word.c_str();
  switch (d) {
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    default:
      return c10::toString(d);
  }
}

}  // namespace bs
