/* 2-D convolution on oneDNN's primitive in NHWC (brgconv: ~300 GFLOP/s on
 * this AVX-512 machine against ~160 for NCHW im2col + sgemm). */
#ifndef OTL_DNNL_CONV_H
#define OTL_DNNL_CONV_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_dnnl_conv otl_dnnl_conv;

/* Whether node n (with shapes t) can run on the oneDNN primitive. */
bool otl_dnnl_conv_supported(const otl_node *n, const otl_tinfo *t);

/* Builds the primitive for n's shapes and reorders its constant weights once. */
onnxtl_status *otl_dnnl_conv_create(dnnl_engine_t engine, dnnl_stream_t stream, const otl_node *n,
                                    const otl_tinfo *t, otl_dnnl_conv **out);
/* src, skip (the fused residual, or NULL) and dst are NHWC; skip may be dst. */
onnxtl_status *otl_dnnl_conv_run(otl_dnnl_conv *c, const float *src, const float *skip, size_t bytes, float *dst);
void otl_dnnl_conv_release(otl_dnnl_conv *c);

#endif
