// SW_HOST_DEVICE marks code that compiles for both the host and CUDA device code.
#pragma once

#if defined(__CUDACC__)
#define SW_HOST_DEVICE __host__ __device__
#else
#define SW_HOST_DEVICE
#endif
