/* Return-code checks for the CUDA backend: each failure becomes a status
 * naming the file, the line and the library's own message. */
#ifndef OTL_CUDA_CHECK_H
#define OTL_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "status.h"

#define CUDA_TRY(call)                                                                                  \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess)                                                                          \
            return otl_error(ONNXTL_ERR_RUNTIME, "%s:%d: CUDA: %s", __FILE__, __LINE__, cudaGetErrorString(e_)); \
    } while (0)
#define CUDNN_TRY(call)                                                                                 \
    do {                                                                                                \
        cudnnStatus_t e_ = (call);                                                                      \
        if (e_ != CUDNN_STATUS_SUCCESS)                                                                 \
            return otl_error(ONNXTL_ERR_RUNTIME, "%s:%d: cuDNN: %s", __FILE__, __LINE__, cudnnGetErrorString(e_)); \
    } while (0)
#define CUBLAS_TRY(call)                                                                                \
    do {                                                                                                \
        cublasStatus_t e_ = (call);                                                                     \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                                \
            return otl_error(ONNXTL_ERR_RUNTIME, "%s:%d: cuBLAS: %s", __FILE__, __LINE__, cublasGetStatusString(e_)); \
    } while (0)

/* Makes cuda:index the calling thread's device; the error says what to do
 * where there is no GPU or no such one. */
static inline onnxtl_status *otl_cuda_use_device(int index) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return otl_error(ONNXTL_ERR_RUNTIME, "no CUDA GPU is available (%s); use --device cpu",
                         e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    if (index >= count)
        return otl_error(ONNXTL_ERR_ARG, "cuda:%d does not exist: this machine has %d GPU%s", index, count,
                         count == 1 ? "" : "s");
    CUDA_TRY(cudaSetDevice(index));
    return NULL;
}

#endif
