// One host/device marker (tiny-cuda-nn style) so every update functor compiles for CPU and CUDA.
#pragma once
#if defined(__CUDACC__)
#define BS_HD __host__ __device__ __forceinline__
#else
#define BS_HD inline
#endif
