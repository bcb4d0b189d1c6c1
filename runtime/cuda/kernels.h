/* Element-wise CUDA kernels for the CUDA backend (kernels.cu). dtype is
 * ONNXTL_FLOAT, ONNXTL_FLOAT16 or ONNXTL_BFLOAT16; 4-D activations are NHWC
 * on the device. */
#ifndef OTL_CUDA_KERNELS_H
#define OTL_CUDA_KERNELS_H

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* float32 host layout -> device dtype; to_nhwc transposes an N x C x HW tensor. */
cudaError_t otl_cuda_from_f32(const float *src, void *dst, int dtype, int64_t n, int64_t c, int64_t hw, int to_nhwc,
                              cudaStream_t s);
/* device dtype -> float32; from_nhwc transposes back to N x C x HW. */
cudaError_t otl_cuda_to_f32(const void *src, float *dst, int dtype, int64_t n, int64_t c, int64_t hw, int from_nhwc,
                            cudaStream_t s);
/* NHWC -> NCHW within one dtype. */
cudaError_t otl_cuda_nhwc_to_nchw(const void *src, void *dst, int dtype, int64_t n, int64_t c, int64_t hw, cudaStream_t s);
cudaError_t otl_cuda_relu(const void *x, void *y, int dtype, int64_t count, cudaStream_t s);
cudaError_t otl_cuda_add(const void *a, const void *b, void *y, int dtype, int64_t count, int relu, cudaStream_t s);
/* y[i, j] += bias[j] (bias in dtype) over rows x cols. */
cudaError_t otl_cuda_add_bias_rows(void *y, const void *bias, int dtype, int64_t rows, int64_t cols, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
