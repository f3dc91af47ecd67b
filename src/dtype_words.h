// The words that name the dtypes a Session takes (--dtype, Python's dtype=), in one table.
#pragma once
#include <torch/torch.h>

#include "words.h"

namespace bs {

inline const Words<torch::Dtype>& dtype_words() {
  static const Words<torch::Dtype> w = {{"float32", torch::kFloat32}, {"float64", torch::kFloat64}};
  return w;
}

// A dtype as the CLI and PyTorch spell it: "float32", "float64", "float16", "bfloat16", else LibTorch's name.
inline const char* dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat32:
      return "float32";
    case torch::kFloat64:
      return "float64";
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    default:
      return c10::toString(d);
  }
}

}  // namespace bs
