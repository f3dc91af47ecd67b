// The words that name the dtypes a Session takes (--dtype, Python's dtype=), in one table.
#pragma once
#include <torch/torch.h>

#include "words.h"

namespace bs {

inline const Words<torch::Dtype>& dtype_words() {
  static const Words<torch::Dtype> w = {{"float32", torch::kFloat32}, {"float64", torch::kFloat64}};
  return w;
}

}  // namespace bs
