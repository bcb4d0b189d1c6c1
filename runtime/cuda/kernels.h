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
/* y[i, j] = relu?(y[i, j] + bias[j] + z[i, j]) over rows x cols, in dtype; z may be
 * NULL.  The epilogue of a convolution (NHWC: rows are pixels) or of a Gemm. */
cudaError_t otl_cuda_add_bias(void *y, const void *bias, const void *z, int dtype, int64_t rows, int64_t cols, int relu,
                              cudaStream_t s);
/* count values of dtype in [-1, 1), for timing on data that is not zeros. */
cudaError_t otl_cuda_fill_noise(void *p, int dtype, int64_t count, cudaStream_t s);

/* Head training, all float32. */
typedef struct {
    float step_size, bias_correction2_sqrt; /* lr / (1 - beta1^t), sqrt(1 - beta2^t) */
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
} otl_adam_step;

/* mask = (z > 0) * (kept ? 1 / (1 - ratio) : 0), kept drawn as dropout.h
 * draws it under key (ratio 0: every value kept, scale 1); a = z * mask. */
cudaError_t otl_cuda_relu_dropout(const float *z, float *mask, float *a, int64_t n, float ratio, uint64_t key,
                                  cudaStream_t s);
cudaError_t otl_cuda_multiply(const float *x, const float *y, float *out, int64_t n, cudaStream_t s);
/* sums[j] = sum over i of x[i, j], rows in order. */
cudaError_t otl_cuda_column_sums(const float *x, float *sums, int64_t rows, int64_t cols, cudaStream_t s);
/* torch.optim.Adam's and SGD's element-wise updates. */
cudaError_t otl_cuda_adam(float *p, const float *g, float *m, float *v, int64_t n, otl_adam_step k, cudaStream_t s);
cudaError_t otl_cuda_sgd(float *p, const float *g, float *buf, int64_t n, float lr, float momentum, float weight_decay,
                         int first, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
