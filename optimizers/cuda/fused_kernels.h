// Host launchers of the CUDA optimizer kernels: raw device pointers, the same functors as the CPU path.
// Compiled whenever nvcc exists (BLOCKSHARP_CUDA=AUTO|ON); the CPU build and the tests never need them.
#pragma once
#include <cstdint>

#include "../update_functors.h"

namespace bs::cuda {

template <class T>
void adamw_step(const AdamWUpdate<T>& f, T* p, const T* g, T* m, T* v, int64_t n, void* stream);
// One thread block per Adam-mini block: reduce mean(g^2), update v_block, apply the functor.
template <class T>
void adam_mini_step(const AdamMiniUpdate<T>& f, T beta2, T one_minus_beta2, T inv_sqrt_bc2, T eps, T* p, const T* g,
                    T* m, T* v_block, int64_t block_size, int64_t n_blocks, void* stream);
template <class T>
void sgd_sai_step(const SgdSaiUpdate<T>& f, T* p, const T* g, T* buf, int64_t n, void* stream);

}  // namespace bs::cuda
