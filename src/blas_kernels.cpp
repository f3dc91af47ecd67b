// Looked up at run time, so any other BLAS works unchanged.
#include "blas_kernels.h"

#include <dlfcn.h>

namespace bs {

std::string blas_core() {
  auto corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? std::string(corename()) : std::string();
}

}  // namespace bs
