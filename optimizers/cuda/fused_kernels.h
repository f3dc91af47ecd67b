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

// The elementwise parts of the other optimizers (their matrix products run through cuBLAS on device).
template <class T>
void hf_moments(const HfAdamMoments<T>& f, const T* r, T* out, T* m, T* v, int64_t n, void* stream);  // galore, apollo
template <class T>
void sgd_clip_step(const SgdClipUpdate<T>& f, T* p, const T* g, T* buf, int64_t n, void* stream);
template <class T>
void adam_clip_step(const AdamClipUpdate<T>& f, T* p, const T* g, T* m, T* v, int64_t n, void* stream);
template <class T>
void sign_step(const SignUpdate<T>& f, T* p, const T* g, const uint8_t* active, int64_t n, void* stream);  // frugal
template <class T>
void scaled_step(const ScaledUpdate<T>& f, T* p, const T* d, const T* h_block, int64_t block_size, int64_t n,
                 void* stream);  // adapm

}  // namespace bs::cuda
