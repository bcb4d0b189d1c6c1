#include "dnnl_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_check.h"
#include "dnnl_reorder.h"

struct otl_dnnl_conv {
    dnnl_stream_t stream;
    dnnl_primitive_t conv;
    dnnl_memory_t src, weights, bias, dst;
    otl_dnnl_rounding to_bf16; /* bf16: the fp32 input rounded into a scratch buffer the primitive reads */
};

bool otl_dnnl_conv_supported(const otl_node *n, const otl_tinfo *t) {
    const otl_tinfo *x = &t[n->in[0]], *w = &t[n->in[1]];
    return n->op == OP_CONV && x->rank == 4 && x->dtype == ONNXTL_FLOAT && w->data &&
           (n->n_in < 3 || n->in[2] < 0 || t[n->in[2]].data) && n->attrs.group >= 1;
}

/* ONNX pads the end by pad_end; oneDNN's padding_r must keep its output size. */
static void window_dims(const otl_window *w, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr) {
    for (int i = 0; i < 2; i++) {
        strides[i] = w->stride[1 + i];
        dil[i] = w->dilation[1 + i] - 1; /* oneDNN counts dilation from 0 */
        pl[i] = w->pad_begin[1 + i];
        pr[i] = (w->out[1 + i] - 1) * w->stride[1 + i] + (w->kernel[1 + i] - 1) * w->dilation[1 + i] + 1 -
                w->in[1 + i] - w->pad_begin[1 + i];
    }
}

static onnxtl_status *make_primitive_desc(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, int types,
                                          dnnl_primitive_desc_t *pd) {
    const otl_tinfo *x = &t[n->in[0]], *w = &t[n->in[1]], *y = &t[n->out[0]];
    const int64_t g = n->attrs.group;
    otl_window win;
    OTL_TRY(otl_window_init(&n->attrs, 2, x->dims + 2, w->dims + 2, false, &win));
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_dims_t dd = {y->dims[0], y->dims[1], y->dims[2], y->dims[3]};
    dnnl_dims_t wd5 = {g, w->dims[0] / g, w->dims[1], w->dims[2], w->dims[3]};
    dnnl_dims_t wd4 = {w->dims[0], w->dims[1], w->dims[2], w->dims[3]};
    dnnl_dims_t bd = {w->dims[0]}, strides, dil, pl, pr;
    window_dims(&win, strides, dil, pl, pr);
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    /* bf16: inputs and weights rounded to bf16, products summed and stored in fp32 */
    const dnnl_data_type_t in_type = types & OTL_CONV_BF16 ? dnnl_bf16 : dnnl_f32;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 4, sd, in_type, dnnl_nhwc), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, types & OTL_CONV_DST_BF16 ? dnnl_bf16 : dnnl_f32, dnnl_nhwc),
             "memory desc");
    if (g > 1) DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 5, wd5, in_type, dnnl_format_tag_any), "memory desc");
    else DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 4, wd4, in_type, dnnl_format_tag_any), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a), "memory desc");
    bool has_bias = n->n_in > 2 && n->in[2] >= 0;
    dnnl_convolution_desc_t cd;
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd,
                                                        has_bias ? &bmd : NULL, &dmd, strides, dil, pl, pr),
             "convolution desc");
    /* Fused residual: dst = conv + dst (dst holds the skip tensor); then the activation. */
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    const otl_attrs *a = &n->attrs;
    if (a->fused_relu || a->fused_act || a->fused_add) {
        DNNL_TRY(dnnl_primitive_attr_create(&attr), "attr");
        DNNL_TRY(dnnl_post_ops_create(&ops), "post ops");
        if (a->fused_add) DNNL_TRY(dnnl_post_ops_append_sum(ops, 1.0f), "post ops");
        if (a->fused_relu) DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f), "post ops");
        if (a->fused_act == FUSED_SWISH)
            DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_swish, a->alpha, 0.0f), "post ops");
        if (a->fused_act == FUSED_HARDSWISH)
            DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_hardswish, 0.0f, 0.0f), "post ops");
        if (a->fused_act == FUSED_CLIP)
            DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_clip_v2, a->clip_min, a->clip_max), "post ops");
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "post ops");
    }
    dnnl_status_t s = dnnl_primitive_desc_create(pd, &cd, attr, eng, NULL);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s == dnnl_success ? NULL : otl_dnnl_failed(s, "convolution primitive");
}

/* Copies the ONNX OIHW weights into the layout the primitive chose. */
static onnxtl_status *reorder_weights(dnnl_engine_t eng, dnnl_stream_t st, const otl_node *n, const otl_tinfo *t,
                                      const dnnl_memory_desc_t *want, dnnl_memory_t *out) {
    const otl_tinfo *w = &t[n->in[1]];
    const int64_t g = n->attrs.group;
    dnnl_dims_t wd5 = {g, w->dims[0] / g, w->dims[1], w->dims[2], w->dims[3]};
    dnnl_dims_t wd4 = {w->dims[0], w->dims[1], w->dims[2], w->dims[3]};
    dnnl_memory_desc_t plain;
    if (g > 1) DNNL_TRY(dnnl_memory_desc_init_by_tag(&plain, 5, wd5, dnnl_f32, dnnl_goihw), "memory desc");
    else DNNL_TRY(dnnl_memory_desc_init_by_tag(&plain, 4, wd4, dnnl_f32, dnnl_oihw), "memory desc");
    return otl_dnnl_reorder_once(eng, st, &plain, w->data, want, out);
}

/* The reorder that rounds the fp32 NHWC input into the bf16 one the primitive reads. */
static onnxtl_status *make_rounding(otl_dnnl_conv *c, dnnl_engine_t eng, const dnnl_memory_desc_t *bf16_md,
                                    const otl_tinfo *x) {
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_memory_desc_t f32_md;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&f32_md, 4, sd, dnnl_f32, dnnl_nhwc), "memory desc");
    return otl_dnnl_rounding_init(&c->to_bf16, eng, &f32_md, bf16_md);
}

static onnxtl_status *build(otl_dnnl_conv *c, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, int types) {
    dnnl_primitive_desc_t pd;
    OTL_TRY(make_primitive_desc(eng, n, t, types, &pd));
    onnxtl_status *st = NULL;
    dnnl_status_t s = dnnl_primitive_create(&c->conv, pd);
    if (s != dnnl_success) st = otl_dnnl_failed(s, "convolution primitive");
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (!st) st = reorder_weights(eng, c->stream, n, t, wmd, &c->weights);
    if (!st && (s = dnnl_memory_create(&c->src, smd, eng, DNNL_MEMORY_NONE))) st = otl_dnnl_failed(s, "memory");
    if (!st && (types & OTL_CONV_BF16) && !(types & OTL_CONV_SRC_BF16)) st = make_rounding(c, eng, smd, &t[n->in[0]]);
    if (!st && (s = dnnl_memory_create(&c->dst, dmd, eng, DNNL_MEMORY_NONE))) st = otl_dnnl_failed(s, "memory");
    if (!st && n->n_in > 2 && n->in[2] >= 0) {
        const dnnl_memory_desc_t *bmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
        if ((s = dnnl_memory_create(&c->bias, bmd, eng, (void *)t[n->in[2]].data))) st = otl_dnnl_failed(s, "memory");
    }
    dnnl_primitive_desc_destroy(pd);
    return st;
}

onnxtl_status *otl_dnnl_conv_create(dnnl_engine_t eng, dnnl_stream_t stream, const otl_node *n,
                                    const otl_tinfo *t, int types, otl_dnnl_conv **out) {
    otl_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) return otl_nomem();
    c->stream = stream;
    onnxtl_status *st = build(c, eng, n, t, types);
    if (st) {
        otl_dnnl_conv_release(c);
        return st;
    }
    *out = c;
    return NULL;
}

size_t otl_dnnl_conv_scratch_bytes(const otl_dnnl_conv *c) { return c->to_bf16.bytes; }

onnxtl_status *otl_dnnl_conv_run(otl_dnnl_conv *c, const void *src, const float *skip, size_t bytes, void *dst,
                                 void *scratch) {
    if (skip && skip != dst) memcpy(dst, skip, bytes);
    if (c->to_bf16.reorder) {
        OTL_TRY(otl_dnnl_rounding_run(&c->to_bf16, c->stream, src, c->src, scratch));
    } else {
        DNNL_TRY(dnnl_memory_set_data_handle(c->src, (void *)src), "set handle");
    }
    DNNL_TRY(dnnl_memory_set_data_handle(c->dst, dst), "set handle");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->weights}, {DNNL_ARG_DST, c->dst},
                               {DNNL_ARG_BIAS, c->bias}};
    DNNL_TRY(dnnl_primitive_execute(c->conv, c->stream, c->bias ? 4 : 3, args), "convolution");
    DNNL_TRY(dnnl_stream_wait(c->stream), "stream wait");
    return NULL;
}

void otl_dnnl_conv_release(otl_dnnl_conv *c) {
    if (!c) return;
    if (c->conv) dnnl_primitive_destroy(c->conv);
    if (c->src) dnnl_memory_destroy(c->src);
    if (c->weights) dnnl_memory_destroy(c->weights);
    if (c->bias) dnnl_memory_destroy(c->bias);
    if (c->dst) dnnl_memory_destroy(c->dst);
    otl_dnnl_rounding_release(&c->to_bf16);
    free(c);
}

const char *otl_cpu_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

bool otl_cpu_bf16_available(char *why, size_t n) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    if ((isa & bf16) == bf16) return true;
    snprintf(why, n, "--precision bf16 on the CPU needs AVX512_BF16 or AMX-BF16 instructions, which this CPU lacks "
                     "(oneDNN runs %s here); use fp32", otl_cpu_isa_name());
    return false;
}
