/* Convolutions through cuDNN's graph API.  Each convolution is an operation
 * graph, conv -> + bias -> (+ residual) -> (ReLU), or the convolution alone
 * when no engine fuses that epilogue.  cuDNN's heuristics name candidate
 * engines; those that fit the precision are timed once on the real buffers
 * and the fastest is kept.  Choices are shared by identical convolutions and
 * remembered in a cache file, so a second run skips the timing. */
#ifndef OTL_CUDA_CONV_H
#define OTL_CUDA_CONV_H

#include <cudnn.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

typedef struct {
    int64_t x[4], w[4], y[4]; /* in ONNX order (NCHW, KCRS); the data is NHWC and KRSC */
    int64_t pad[2], stride[2], dilation[2];
    cudnnDataType_t io;       /* CUDNN_DATA_FLOAT, _HALF or _BFLOAT16 */
    onnxtl_precision precision; /* fp32 keeps tensor cores off */
    bool residual, relu;      /* y = relu?(conv(x, w) + bias + z?) */
} otl_conv_shape;

typedef struct {
    const void *x, *w, *bias, *z;
    void *y, *workspace;
} otl_conv_args;

typedef struct otl_conv_tuner otl_conv_tuner;
typedef struct otl_conv otl_conv; /* one execution plan, owned by its tuner */

/* cache_path may be "": choices then last as long as the tuner.  At
 * log_level 2 every candidate engine is listed on log with its outcome. */
onnxtl_status *otl_conv_tuner_create(cudnnHandle_t dnn, cudaStream_t stream, const char *cache_path, int log_level,
                                     otl_log log, otl_conv_tuner **out);
/* The plan for shape: from memory, else from the cache file, else timed on
 * args (its workspace is not used; timing allocates its own). */
onnxtl_status *otl_conv_plan(otl_conv_tuner *t, const otl_conv_shape *shape, const otl_conv_args *args,
                             const otl_conv **out);
/* Adds this run's new choices to the cache file (best effort: a log line on failure). */
void otl_conv_tuner_save(otl_conv_tuner *t);
void otl_conv_tuner_release(otl_conv_tuner *t);
/* How many convolutions were timed (not found in memory or the cache file). */
int otl_conv_tuner_timed(const otl_conv_tuner *t);

/* false: the plan computes conv(x, w) alone and the caller adds the epilogue. */
bool otl_conv_fused(const otl_conv *c);
size_t otl_conv_workspace(const otl_conv *c);
onnxtl_status *otl_conv_run(cudnnHandle_t dnn, const otl_conv *c, const otl_conv_args *args);

#endif
