/* onnxtl's own Winograd F(4x4, 3x3) for fp32 3x3 stride-1 convolutions, in
 * AVX2 and FMA or in AVX-512, reading and writing NHWC. */
#ifndef OTL_WINOGRAD_H
#define OTL_WINOGRAD_H

#include "cpu_kernels.h"

typedef struct otl_winograd otl_winograd;

/* The kernels' instruction set; the caller checks that the CPU has it. */
typedef enum { OTL_WINOGRAD_AVX2, OTL_WINOGRAD_AVX512 } otl_winograd_isa;

/* Whether node n (with shapes t), a convolution, is one this Winograd runs
 * on isa: fp32, 3x3, stride 1, no dilation, no groups, input channels a
 * multiple of a vector (8 floats in AVX2, 16 in AVX-512) and output
 * channels of two, no fused activation but ReLU. */
bool otl_winograd_supported(const otl_node *n, const otl_tinfo *t, otl_winograd_isa isa);
/* Transforms n's constant weights once. */
onnxtl_status *otl_winograd_create(const otl_node *n, const otl_tinfo *t, otl_winograd_isa isa, otl_winograd **out);
/* The scratch a run needs, in bytes (64-byte aligned by the caller). */
size_t otl_winograd_scratch_bytes(const otl_winograd *w);
/* src, skip (the fused residual, or NULL) and dst are NHWC fp32; skip may be dst. */
void otl_winograd_run(const otl_winograd *w, const float *src, const float *skip, float *dst, void *scratch);
void otl_winograd_release(otl_winograd *w);

#endif
