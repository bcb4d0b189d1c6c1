/* The activations a Conv or a Linear layer fuses, as oneDNN post-ops: they
 * run on each tile of the output while it is in cache. */
#ifndef OTL_DNNL_POST_OPS_H
#define OTL_DNNL_POST_OPS_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"
#include "dnnl_check.h"

/* Appends a's fused Relu or other activation to ops; nothing where it has none. */
static inline onnxtl_status *otl_dnnl_append_activation(const otl_attrs *a, dnnl_post_ops_t ops) {
    dnnl_alg_kind_t alg;
    float alpha = 0.0f, beta = 0.0f;
    switch (a->fused_act) {
    case FUSED_SWISH: alg = dnnl_eltwise_swish, alpha = a->alpha; break;
    case FUSED_HARDSWISH: alg = dnnl_eltwise_hardswish; break;
    case FUSED_CLIP: alg = dnnl_eltwise_clip_v2, alpha = a->clip_min, beta = a->clip_max; break;
    case FUSED_GELU: alg = dnnl_eltwise_gelu_erf; break;
    case FUSED_GELU_TANH: alg = dnnl_eltwise_gelu_tanh; break;
    default:
        if (!a->fused_relu) return NULL;
        alg = dnnl_eltwise_relu;
    }
    DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, alg, alpha, beta), "post ops");
    return NULL;
}

#endif
