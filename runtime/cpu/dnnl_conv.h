/* 2-D convolution on oneDNN's primitive in NHWC (brgconv: ~300 GFLOP/s on
 * this AVX-512 machine against ~160 for NCHW im2col + sgemm). */
#ifndef OTL_DNNL_CONV_H
#define OTL_DNNL_CONV_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_dnnl_conv otl_dnnl_conv;

/* Whether node n (with shapes t) can run on the oneDNN primitive. */
bool otl_dnnl_conv_supported(const otl_node *n, const otl_tinfo *t);

/* The arithmetic of one convolution: with OTL_CONV_BF16 the weights and
 * the input are rounded to bfloat16 (AMX or AVX512_BF16 multiply them) and
 * the sums kept in fp32; the input may already be held in bf16 and the
 * output may be written in bf16 for convolutions that read it. */
enum { OTL_CONV_BF16 = 1, OTL_CONV_SRC_BF16 = 2, OTL_CONV_DST_BF16 = 4 };

/* Builds the primitive for n's shapes and reorders its constant weights once. */
onnxtl_status *otl_dnnl_conv_create(dnnl_engine_t engine, dnnl_stream_t stream, const otl_node *n,
                                    const otl_tinfo *t, int types, otl_dnnl_conv **out);
/* The scratch a run needs: the rounded input (0 in fp32). */
size_t otl_dnnl_conv_scratch_bytes(const otl_dnnl_conv *c);
/* src, skip (the fused residual, or NULL) and dst are NHWC, in the types it
 * was built for; skip may be dst. */
onnxtl_status *otl_dnnl_conv_run(otl_dnnl_conv *c, const void *src, const float *skip, size_t bytes, void *dst,
                                 void *scratch);

/* Whether oneDNN multiplies bf16 on this CPU; if not, why names what it lacks. */
bool otl_cpu_bf16_available(char *why, size_t n);
/* The instruction set oneDNN's kernels use here, as a name ("avx512_core_amx"). */
const char *otl_cpu_isa_name(void);
void otl_dnnl_conv_release(otl_dnnl_conv *c);

#endif
