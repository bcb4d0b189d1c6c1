/* The oneDNN reorders the convolution and matmul modules share: constant
 * weights copied once into the layout a primitive chose, and an fp32 input
 * rounded to bf16 or quantised to int8 on each run. */
#ifndef OTL_DNNL_REORDER_H
#define OTL_DNNL_REORDER_H

#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>

#include "status.h"

/* Per-channel multipliers a reorder applies on the way: out = round(in * scale[c])
 * where c indexes the dimensions set in mask; NULL scales: none. */
typedef struct {
    const float *scales;
    int64_t count;
    int mask;
} otl_dnnl_scales;

/* A reorder from from_md to to_md that scales on the way and, with add,
 * adds into what the destination holds instead of overwriting it. */
dnnl_status_t otl_dnnl_reorder_create(dnnl_engine_t eng, const dnnl_memory_desc_t *from_md,
                                     const dnnl_memory_desc_t *to_md, otl_dnnl_scales scales, bool add,
                                     dnnl_primitive_t *out);

/* Allocates *out with to_md and copies from (laid out as from_md) into it. */
onnxtl_status *otl_dnnl_reorder_once(dnnl_engine_t eng, dnnl_stream_t st, const dnnl_memory_desc_t *from_md,
                                     const void *from, const dnnl_memory_desc_t *to_md, otl_dnnl_scales scales,
                                     dnnl_memory_t *out);

/* fp32 to bf16, or to int8 as round(x * scale), in the same layout: bytes is
 * the size of the converted input. */
typedef struct {
    dnnl_primitive_t reorder;
    dnnl_memory_t f32;
    size_t bytes;
} otl_dnnl_conversion;

onnxtl_status *otl_dnnl_conversion_init(otl_dnnl_conversion *r, dnnl_engine_t eng, const dnnl_memory_desc_t *f32_md,
                                      const dnnl_memory_desc_t *to_md, float scale);
/* Converts src into scratch, which becomes to's data. */
onnxtl_status *otl_dnnl_conversion_run(const otl_dnnl_conversion *r, dnnl_stream_t st, const void *src,
                                     dnnl_memory_t to, void *scratch);
void otl_dnnl_conversion_release(otl_dnnl_conversion *r);

#endif
