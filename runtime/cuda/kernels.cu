#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

enum { DT_FLOAT = 1, DT_FLOAT16 = 10, DT_BFLOAT16 = 16 };

template <typename T> __device__ float load(const T *p, int64_t i);
template <> __device__ float load<float>(const float *p, int64_t i) { return p[i]; }
template <> __device__ float load<__half>(const __half *p, int64_t i) { return __half2float(p[i]); }
template <> __device__ float load<__nv_bfloat16>(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }

template <typename T> __device__ void store(T *p, int64_t i, float v);
template <> __device__ void store<float>(float *p, int64_t i, float v) { p[i] = v; }
template <> __device__ void store<__half>(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }
template <> __device__ void store<__nv_bfloat16>(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

static unsigned blocks(int64_t n) { return (unsigned)((n + 255) / 256); }

/* Index i of an N x HW x C (NHWC) tensor in N x C x HW order. */
__device__ int64_t nchw_index(int64_t i, int64_t c, int64_t hw) {
    int64_t ch = i % c, rest = i / c, p = rest % hw, b = rest / hw;
    return (b * c + ch) * hw + p;
}

template <typename S, typename D>
__global__ void convert(const S *src, D *dst, int64_t count, int64_t c, int64_t hw, int mode) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= count) return;
    /* mode 0: same order; 1: dst NHWC from src NCHW; 2: dst NCHW from src NHWC */
    if (mode == 1) store(dst, i, load(src, nchw_index(i, c, hw)));
    else if (mode == 2) store(dst, nchw_index(i, c, hw), load(src, i));
    else store(dst, i, load(src, i));
}

template <typename S, typename D>
static cudaError_t launch_convert(const void *src, void *dst, int64_t n, int64_t c, int64_t hw, int mode, cudaStream_t s) {
    int64_t count = n * c * hw;
    if (count) convert<S, D><<<blocks(count), 256, 0, s>>>((const S *)src, (D *)dst, count, c, hw, mode);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_from_f32(const float *src, void *dst, int dtype, int64_t n, int64_t c, int64_t hw,
                                         int to_nhwc, cudaStream_t s) {
    int mode = to_nhwc ? 1 : 0;
    if (dtype == DT_FLOAT16) return launch_convert<float, __half>(src, dst, n, c, hw, mode, s);
    if (dtype == DT_BFLOAT16) return launch_convert<float, __nv_bfloat16>(src, dst, n, c, hw, mode, s);
    return launch_convert<float, float>(src, dst, n, c, hw, mode, s);
}

extern "C" cudaError_t otl_cuda_to_f32(const void *src, float *dst, int dtype, int64_t n, int64_t c, int64_t hw,
                                       int from_nhwc, cudaStream_t s) {
    int mode = from_nhwc ? 2 : 0;
    if (dtype == DT_FLOAT16) return launch_convert<__half, float>(src, dst, n, c, hw, mode, s);
    if (dtype == DT_BFLOAT16) return launch_convert<__nv_bfloat16, float>(src, dst, n, c, hw, mode, s);
    return launch_convert<float, float>(src, dst, n, c, hw, mode, s);
}

extern "C" cudaError_t otl_cuda_nhwc_to_nchw(const void *src, void *dst, int dtype, int64_t n, int64_t c, int64_t hw,
                                             cudaStream_t s) {
    if (dtype == DT_FLOAT16) return launch_convert<__half, __half>(src, dst, n, c, hw, 2, s);
    if (dtype == DT_BFLOAT16) return launch_convert<__nv_bfloat16, __nv_bfloat16>(src, dst, n, c, hw, 2, s);
    return launch_convert<float, float>(src, dst, n, c, hw, 2, s);
}

template <typename T> __global__ void relu(const T *x, T *y, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) store(y, i, fmaxf(load(x, i), 0.0f));
}

template <typename T> __global__ void add(const T *a, const T *b, T *y, int64_t n, int with_relu) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = load(a, i) + load(b, i);
    store(y, i, with_relu ? fmaxf(v, 0.0f) : v);
}

template <typename T> __global__ void add_bias_rows(T *y, const T *bias, int64_t rows, int64_t cols) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < rows * cols) store(y, i, load(y, i) + load(bias, i % cols));
}

extern "C" cudaError_t otl_cuda_relu(const void *x, void *y, int dtype, int64_t n, cudaStream_t s) {
    if (!n) return cudaSuccess;
    if (dtype == DT_FLOAT16) relu<<<blocks(n), 256, 0, s>>>((const __half *)x, (__half *)y, n);
    else if (dtype == DT_BFLOAT16) relu<<<blocks(n), 256, 0, s>>>((const __nv_bfloat16 *)x, (__nv_bfloat16 *)y, n);
    else relu<<<blocks(n), 256, 0, s>>>((const float *)x, (float *)y, n);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_add(const void *a, const void *b, void *y, int dtype, int64_t n, int with_relu, cudaStream_t s) {
    if (!n) return cudaSuccess;
    if (dtype == DT_FLOAT16)
        add<<<blocks(n), 256, 0, s>>>((const __half *)a, (const __half *)b, (__half *)y, n, with_relu);
    else if (dtype == DT_BFLOAT16)
        add<<<blocks(n), 256, 0, s>>>((const __nv_bfloat16 *)a, (const __nv_bfloat16 *)b, (__nv_bfloat16 *)y, n, with_relu);
    else
        add<<<blocks(n), 256, 0, s>>>((const float *)a, (const float *)b, (float *)y, n, with_relu);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_add_bias_rows(void *y, const void *bias, int dtype, int64_t rows, int64_t cols, cudaStream_t s) {
    int64_t n = rows * cols;
    if (!n) return cudaSuccess;
    if (dtype == DT_FLOAT16) add_bias_rows<<<blocks(n), 256, 0, s>>>((__half *)y, (const __half *)bias, rows, cols);
    else if (dtype == DT_BFLOAT16)
        add_bias_rows<<<blocks(n), 256, 0, s>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)bias, rows, cols);
    else add_bias_rows<<<blocks(n), 256, 0, s>>>((float *)y, (const float *)bias, rows, cols);
    return cudaGetLastError();
}
