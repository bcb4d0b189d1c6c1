#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "dropout.h"
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

/* y = act(y + bias[col] + z): rows x cols, bias per column, z optional. */
template <typename T> __global__ void add_bias(T *y, const T *bias, const T *z, int64_t rows, int64_t cols, int with_relu) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    float v = load(y, i) + load(bias, i % cols);
    if (z) v += load(z, i);
    store(y, i, with_relu ? fmaxf(v, 0.0f) : v);
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

extern "C" cudaError_t otl_cuda_add_bias(void *y, const void *bias, const void *z, int dtype, int64_t rows, int64_t cols,
                                         int with_relu, cudaStream_t s) {
    int64_t n = rows * cols;
    if (!n) return cudaSuccess;
    if (dtype == DT_FLOAT16)
        add_bias<<<blocks(n), 256, 0, s>>>((__half *)y, (const __half *)bias, (const __half *)z, rows, cols, with_relu);
    else if (dtype == DT_BFLOAT16)
        add_bias<<<blocks(n), 256, 0, s>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)bias, (const __nv_bfloat16 *)z, rows,
                                            cols, with_relu);
    else add_bias<<<blocks(n), 256, 0, s>>>((float *)y, (const float *)bias, (const float *)z, rows, cols, with_relu);
    return cudaGetLastError();
}

/* Values in [-1, 1) from a hash of the index: data for timing, never zeros. */
template <typename T> __global__ void fill_noise(T *p, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t h = (uint32_t)i * 2654435761u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    store(p, i, (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
}

extern "C" cudaError_t otl_cuda_fill_noise(void *p, int dtype, int64_t n, cudaStream_t s) {
    if (!n) return cudaSuccess;
    if (dtype == DT_FLOAT16) fill_noise<<<blocks(n), 256, 0, s>>>((__half *)p, n);
    else if (dtype == DT_BFLOAT16) fill_noise<<<blocks(n), 256, 0, s>>>((__nv_bfloat16 *)p, n);
    else fill_noise<<<blocks(n), 256, 0, s>>>((float *)p, n);
    return cudaGetLastError();
}

/* ---- head training (float32) ---- */

/* mask = ReLU's gate times the dropout scale, drawn as the CPU draws it
 * (dropout.h; ratio 0 keeps every value); a = z * mask. */
__global__ void relu_dropout(const float *z, float *mask, float *a, int64_t n, float ratio, uint64_t key) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const bool kept = ratio <= 0.0f || otl_dropout_keeps(key, (uint64_t)i, ratio);
    mask[i] = z[i] > 0.0f && kept ? (ratio > 0.0f ? otl_dropout_scale(ratio) : 1.0f) : 0.0f;
    a[i] = z[i] * mask[i];
}

__global__ void multiply(const float *x, const float *y, float *out, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] * y[i];
}

/* One thread per column, summing rows in order, as the CPU does. */
__global__ void column_sums(const float *x, float *sums, int64_t rows, int64_t cols) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.0f;
    for (int64_t i = 0; i < rows; i++) s += x[i * cols + j];
    sums[j] = s;
}

__global__ void adam(float *p, const float *g, float *m, float *v, int64_t n, otl_adam_step k) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = k.weight_decay != 0.0f ? g[i] + k.weight_decay * p[i] : g[i];
    m[i] = m[i] * k.beta1 + k.one_minus_beta1 * gi;
    v[i] = v[i] * k.beta2 + k.one_minus_beta2 * gi * gi;
    float denom = sqrtf(v[i]) / k.bias_correction2_sqrt + k.eps;
    p[i] = p[i] + -k.step_size * (m[i] / denom);
}

__global__ void sgd(float *p, const float *g, float *buf, int64_t n, float lr, float momentum, float weight_decay,
                    int first) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float d = weight_decay != 0.0f ? g[i] + weight_decay * p[i] : g[i];
    if (momentum != 0.0f) {
        buf[i] = first ? d : buf[i] * momentum + d;
        d = buf[i];
    }
    p[i] = p[i] + -lr * d;
}

extern "C" cudaError_t otl_cuda_relu_dropout(const float *z, float *mask, float *a, int64_t n, float ratio, uint64_t key,
                                             cudaStream_t s) {
    if (n) relu_dropout<<<blocks(n), 256, 0, s>>>(z, mask, a, n, ratio, key);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_multiply(const float *x, const float *y, float *out, int64_t n, cudaStream_t s) {
    if (n) multiply<<<blocks(n), 256, 0, s>>>(x, y, out, n);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_column_sums(const float *x, float *sums, int64_t rows, int64_t cols, cudaStream_t s) {
    if (cols) column_sums<<<blocks(cols), 256, 0, s>>>(x, sums, rows, cols);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_adam(float *p, const float *g, float *m, float *v, int64_t n, otl_adam_step k,
                                     cudaStream_t s) {
    if (n) adam<<<blocks(n), 256, 0, s>>>(p, g, m, v, n, k);
    return cudaGetLastError();
}

extern "C" cudaError_t otl_cuda_sgd(float *p, const float *g, float *buf, int64_t n, float lr, float momentum,
                                    float weight_decay, int first, cudaStream_t s) {
    if (n) sgd<<<blocks(n), 256, 0, s>>>(p, g, buf, n, lr, momentum, weight_decay, first);
    return cudaGetLastError();
}
