// CUDA kernels of the fused optimizers. Each applies the update functor of update_functors.h, the same
// code the CPU loop runs, so the CPU tests verify the arithmetic of both.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "fused_kernels.h"

// Every CUDA call and every launch is checked (tiny-cuda-nn's CUDA_CHECK_THROW): a failure throws with
// the call, the file and line, and CUDA's own message.
#define BS_CUDA_CHECK(call)                                                                     \
  do {                                                                                          \
    const cudaError_t bs_err = (call);                                                          \
    if (bs_err != cudaSuccess)                                                                  \
      throw std::runtime_error(std::string("CUDA: ") + #call + " failed at " + __FILE__ + ":" + \
                               std::to_string(__LINE__) + ": " + cudaGetErrorString(bs_err));   \
  } while (0)

namespace bs::cuda {

namespace {

// Threads per block of every kernel; the Adam-mini reduction's shared array has exactly this size.
constexpr int kThreads = 256;

template <class F, class T>
__global__ void elementwise4(F f, T* p, const T* g, T* a, T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    f(p[i], g[i], a[i], b[i]);
}

template <class F, class T>
__global__ void elementwise3(F f, T* p, const T* g, T* a, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    f(p[i], g[i], a[i]);
}

template <class T>
__global__ void adam_mini_blocks(AdamMiniUpdate<T> f, T beta2, T one_minus_beta2, T inv_sqrt_bc2, T eps, T* p,
                                 const T* g, T* m, T* v_block, int64_t block_size) {
  // mean(g^2) summed in T, as the CPU loop sums it (cpu_loop's block drivers), in a tree instead of a row.
  __shared__ T partial[kThreads];
  const int64_t off = blockIdx.x * block_size;
  T acc = 0;
  for (int64_t k = threadIdx.x; k < block_size; k += blockDim.x) acc += g[off + k] * g[off + k];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  __shared__ T inv_h;
  if (threadIdx.x == 0) {
    const T v = v_block[blockIdx.x] * beta2 + partial[0] / T(block_size) * one_minus_beta2;
    v_block[blockIdx.x] = v;
    inv_h = T(1) / (sqrt(v) * inv_sqrt_bc2 + eps);
  }
  __syncthreads();
  for (int64_t k = threadIdx.x; k < block_size; k += blockDim.x) f(p[off + k], g[off + k], m[off + k], inv_h);
}

template <class T>
__global__ void moments_kernel(HfAdamMoments<T> f, const T* r, T* out, T* m, T* v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    out[i] = f(r[i], m[i], v[i]);
}

template <class T>
__global__ void sign_kernel(SignUpdate<T> f, T* p, const T* g, const uint8_t* active, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    if (!active[i]) f(p[i], g[i]);
}

template <class T>
__global__ void scaled_kernel(ScaledUpdate<T> f, T* p, const T* d, const T* h_block, int64_t block_size, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    f(p[i], d[i], h_block[i / block_size]);
}

int grid_for(int64_t n) { return static_cast<int>(n / kThreads + 1 < 65535 ? n / kThreads + 1 : 65535); }

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

template <class T>
void adamw_step(const AdamWUpdate<T>& f, T* p, const T* g, T* m, T* v, int64_t n, void* stream) {
  elementwise4<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, p, g, m, v, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void adam_mini_step(const AdamMiniUpdate<T>& f, T beta2, T one_minus_beta2, T inv_sqrt_bc2, T eps, T* p, const T* g,
                    T* m, T* v_block, int64_t block_size, int64_t n_blocks, void* stream) {
  adam_mini_blocks<<<static_cast<unsigned>(n_blocks), kThreads, 0, as_stream(stream)>>>(
      f, beta2, one_minus_beta2, inv_sqrt_bc2, eps, p, g, m, v_block, block_size);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void sgd_sai_step(const SgdSaiUpdate<T>& f, T* p, const T* g, T* buf, int64_t n, void* stream) {
  elementwise3<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, p, g, buf, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void hf_moments(const HfAdamMoments<T>& f, const T* r, T* out, T* m, T* v, int64_t n, void* stream) {
  moments_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, r, out, m, v, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void sgd_clip_step(const SgdClipUpdate<T>& f, T* p, const T* g, T* buf, int64_t n, void* stream) {
  elementwise3<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, p, g, buf, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void adam_clip_step(const AdamClipUpdate<T>& f, T* p, const T* g, T* m, T* v, int64_t n, void* stream) {
  elementwise4<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, p, g, m, v, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void sign_step(const SignUpdate<T>& f, T* p, const T* g, const uint8_t* active, int64_t n, void* stream) {
  sign_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, p, g, active, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void scaled_step(const ScaledUpdate<T>& f, T* p, const T* d, const T* h_block, int64_t block_size, int64_t n,
                 void* stream) {
  scaled_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(f, p, d, h_block, block_size, n);
  BS_CUDA_CHECK(cudaGetLastError());
}

#define BS_INSTANTIATE(T)                                                                                       \
  template void adamw_step<T>(const AdamWUpdate<T>&, T*, const T*, T*, T*, int64_t, void*);                     \
  template void adam_mini_step<T>(const AdamMiniUpdate<T>&, T, T, T, T, T*, const T*, T*, T*, int64_t, int64_t, \
                                  void*);                                                                       \
  template void sgd_sai_step<T>(const SgdSaiUpdate<T>&, T*, const T*, T*, int64_t, void*);                      \
  template void hf_moments<T>(const HfAdamMoments<T>&, const T*, T*, T*, T*, int64_t, void*);                   \
  template void sgd_clip_step<T>(const SgdClipUpdate<T>&, T*, const T*, T*, int64_t, void*);                    \
  template void adam_clip_step<T>(const AdamClipUpdate<T>&, T*, const T*, T*, T*, int64_t, void*);              \
  template void sign_step<T>(const SignUpdate<T>&, T*, const T*, const uint8_t*, int64_t, void*);               \
  template void scaled_step<T>(const ScaledUpdate<T>&, T*, const T*, const T*, int64_t, int64_t, void*);
BS_INSTANTIATE(float)
BS_INSTANTIATE(double)

}  // namespace bs::cuda
