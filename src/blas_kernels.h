// Which OpenBLAS kernel table LibTorch's matrix products run on, for benchmark reports: timings of
// products depend on it (OPENBLAS_CORETYPE chooses it; some machines pin it for correctness).
#pragma once
#include <string>

namespace bs {

// "Haswell", "SkylakeX", ...; "" when the BLAS is not OpenBLAS.
std::string blas_core();

}  // namespace bs
