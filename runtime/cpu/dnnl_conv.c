#include "dnnl_conv.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_check.h"
#include "dnnl_post_ops.h"
#include "dnnl_reorder.h"
#include "winograd.h"

struct otl_dnnl_conv {
    dnnl_stream_t stream;
    dnnl_primitive_t conv;
    dnnl_memory_t src, weights, bias, dst;
    dnnl_memory_t dw_weights, dw_bias; /* a fused depthwise convolution's (otl_dnnl_conv_create_fused_dw) */
    otl_dnnl_conversion convert; /* bf16 or int8: the fp32 input converted into a scratch buffer the primitive reads */
    otl_dnnl_conversion to_sum;  /* a fused residual of the other size than dst's, converted into dst */
    otl_dnnl_conversion from_dst; /* a fused depthwise convolution's blocked output, reordered into dst */
    dnnl_memory_t dst_nhwc;       /* dst as that reorder writes it */
    size_t blocked_bytes;         /* the blocked output, in the scratch after the converted input */
    dnnl_memory_t sum;           /* dst as the residual's conversion writes it */
    size_t skip_bytes;           /* the fused residual as it arrives */
    otl_winograd *winograd;      /* onnxtl's Winograd, which runs instead of a primitive */
};

bool otl_dnnl_conv_supported(const otl_node *n, const otl_tinfo *t) {
    const otl_tinfo *x = &t[n->in[0]], *w = &t[n->in[1]];
    return n->op == OP_CONV && x->rank == 4 && x->dtype == ONNXTL_FLOAT && w->data &&
           (n->n_in < 3 || n->in[2] < 0 || t[n->in[2]].data) && n->attrs.group >= 1;
}

static bool is_int8(dnnl_data_type_t type) { return type == dnnl_u8 || type == dnnl_s8; }

/* The type the weights are multiplied in. */
static dnnl_data_type_t weights_type(const otl_conv_arith *a) {
    return is_int8(a->multiply) ? dnnl_s8 : a->multiply;
}

/* Per-channel int8 scales: each output channel's weights quantised as
 * round(w * weights[oc]) with its largest magnitude at 127, and the factor
 * that takes that channel's int32 sums back to real values. */
typedef struct {
    float *weights; /* [OC] */
    float *outputs; /* [OC] */
} int8_scales;

/* Below this, a channel's weights are taken as zeros (scale 1): a scale from
 * a denormal largest weight would overflow. */
#define TINY_WEIGHT 1e-30f

static onnxtl_status *int8_scales_init(const otl_node *n, const otl_tinfo *t, const otl_conv_arith *a, int8_scales *q) {
    const otl_tinfo *w = &t[n->in[1]];
    const int64_t oc = w->dims[0], per = oc ? otl_tinfo_count(w) / oc : 0;
    q->weights = malloc(sizeof *q->weights * (size_t)(oc + 1));
    q->outputs = malloc(sizeof *q->outputs * (size_t)(oc + 1));
    if (!q->weights || !q->outputs) return otl_nomem();
    const float *data = w->data;
    for (int64_t o = 0; o < oc; o++) {
        float m = 0;
        for (int64_t i = 0; i < per; i++) m = fmaxf(m, fabsf(data[o * per + i]));
        q->weights[o] = m > TINY_WEIGHT ? 127.0f / m : 1.0f;
        const double back = 1.0 / ((double)a->in_scale * q->weights[o]);
        if (!(back >= FLT_MIN && back <= FLT_MAX))
            return otl_error(ONNXTL_ERR_ARG, "node '%s': its int8 scales leave float's range (weights up to %g, input "
                             "scale %g); run it in fp32", n->name, m, a->in_scale);
        q->outputs[o] = (float)back;
    }
    return NULL;
}

static void int8_scales_free(int8_scales *q) {
    free(q->weights);
    free(q->outputs);
}

/* ONNX pads the end by pad_end; oneDNN's padding_r must keep its output size. */
void otl_dnnl_window_geometry(const otl_window *w, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl,
                              dnnl_dims_t pr) {
    for (int i = 0; i < 2; i++) {
        strides[i] = w->stride[1 + i];
        dil[i] = w->dilation[1 + i] - 1; /* oneDNN counts dilation from 0 */
        pl[i] = w->pad_begin[1 + i];
        pr[i] = (w->out[1 + i] - 1) * w->stride[1 + i] + (w->kernel[1 + i] - 1) * w->dilation[1 + i] + 1 -
                w->in[1 + i] - w->pad_begin[1 + i];
    }
}

onnxtl_status *otl_dnnl_conv_geometry(const otl_node *n, const otl_tinfo *t, dnnl_dims_t strides, dnnl_dims_t dil,
                                      dnnl_dims_t pl, dnnl_dims_t pr) {
    otl_window w;
    OTL_TRY(otl_window_init(&n->attrs, 2, t[n->in[0]].dims + 2, t[n->in[1]].dims + 2, false, &w));
    otl_dnnl_window_geometry(&w, strides, dil, pl, pr);
    return NULL;
}

int otl_dnnl_conv_weights_dims(const otl_node *n, const otl_tinfo *t, dnnl_dims_t d) {
    const otl_tinfo *w = &t[n->in[1]];
    const int64_t g = n->attrs.group;
    if (g == 1) {
        for (int i = 0; i < 4; i++) d[i] = w->dims[i];
        return 4;
    }
    d[0] = g, d[1] = w->dims[0] / g;
    for (int i = 1; i < 4; i++) d[i + 1] = w->dims[i];
    return 5;
}

/* The type the fused residual is summed from: dst's own, except that an
 * int8 dst holds the residual's int8 type (s8 under a u8 ReLU output). */
static dnnl_data_type_t sum_type(const otl_conv_arith *a) { return is_int8(a->out) ? a->skip_int8 : dnnl_f32; }

/* What runs after the sums: the residual, the activation, and for an int8
 * output its quantisation (a last linear step: the activation sees real
 * values, and an int8 residual is taken back to real ones as it is added). */
static onnxtl_status *add_post_ops(const otl_attrs *a, const otl_conv_arith *arith, dnnl_post_ops_t ops) {
    if (a->fused_add && is_int8(arith->out))
        DNNL_TRY(dnnl_post_ops_append_sum_v2(ops, 1.0f / arith->skip_scale, sum_type(arith)), "post ops");
    else if (a->fused_add)
        DNNL_TRY(dnnl_post_ops_append_sum(ops, 1.0f), "post ops");
    OTL_TRY(otl_dnnl_append_activation(a, ops));
    if (is_int8(arith->out))
        DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_linear, arith->out_scale, 0.0f), "post ops");
    return NULL;
}

/* The depthwise 3x3 convolution a 1x1 one's post-ops run on its output rows
 * as they are made, and that convolution's own activation after it. */
static onnxtl_status *add_dw_post_ops(const otl_node *dw, const otl_tinfo *t, dnnl_post_ops_t ops) {
    otl_window win;
    OTL_TRY(otl_window_init(&dw->attrs, 2, t[dw->in[0]].dims + 2, t[dw->in[1]].dims + 2, false, &win));
    if (win.stride[1] == 1)
        DNNL_TRY(dnnl_post_ops_append_dw_k3s1p1(ops, dnnl_f32, dnnl_f32, dnnl_f32, 0, 0, NULL), "post ops");
    else
        DNNL_TRY(dnnl_post_ops_append_dw_k3s2p1(ops, dnnl_f32, dnnl_f32, dnnl_f32, 0, 0, NULL), "post ops");
    return otl_dnnl_append_activation(&dw->attrs, ops);
}

static onnxtl_status *make_primitive_desc(dnnl_engine_t eng, const otl_node *n, const otl_node *dw,
                                          const otl_tinfo *t, const otl_conv_arith *arith, const int8_scales *q,
                                          dnnl_primitive_desc_t *pd) {
    const otl_tinfo *x = &t[n->in[0]], *w = &t[n->in[1]], *y = &t[n->out[0]];
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_dims_t dd = {y->dims[0], y->dims[1], y->dims[2], y->dims[3]};
    dnnl_dims_t wd, bd = {w->dims[0]}, strides, dil, pl, pr;
    const int w_rank = otl_dnnl_conv_weights_dims(n, t, wd);
    OTL_TRY(otl_dnnl_conv_geometry(n, t, strides, dil, pl, pr));
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    /* oneDNN 2.6's fused depthwise kernels write garbage in NHWC past a few
     * MB of output (checked on AVX2), but not in their blocked layouts */
    const dnnl_format_tag_t act_tag = dw ? dnnl_format_tag_any : dnnl_nhwc;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 4, sd, arith->multiply, act_tag), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, arith->out, act_tag), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, w_rank, wd, weights_type(arith), dnnl_format_tag_any), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a), "memory desc");
    bool has_bias = n->n_in > 2 && n->in[2] >= 0;
    dnnl_convolution_desc_t cd;
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd,
                                                        has_bias ? &bmd : NULL, &dmd, strides, dil, pl, pr),
             "convolution desc");
    /* Fused residual: dst = conv + dst (dst holds the skip tensor); then the activation. */
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t ops = NULL;
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attr");
    dnnl_status_t s = dnnl_post_ops_create(&ops);
    onnxtl_status *st = s == dnnl_success ? add_post_ops(&n->attrs, arith, ops) : otl_dnnl_failed(s, "post ops");
    if (!st && dw) st = add_dw_post_ops(dw, t, ops);
    if (!st && (s = dnnl_primitive_attr_set_post_ops(attr, ops))) st = otl_dnnl_failed(s, "post ops");
    /* int8: the sums of output channel oc are scaled by q->outputs[oc] (the channel dimension, 1 << 1) */
    if (!st && q->weights && (s = dnnl_primitive_attr_set_output_scales(attr, w->dims[0], 1 << 1, q->outputs)))
        st = otl_dnnl_failed(s, "output scales");
    if (!st && (s = dnnl_primitive_desc_create(pd, &cd, attr, eng, NULL))) st = otl_dnnl_failed(s, "convolution primitive");
    if (ops) dnnl_post_ops_destroy(ops);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Copies the ONNX OIHW weights into the layout the primitive chose, quantised per channel for int8. */
static onnxtl_status *reorder_weights(dnnl_engine_t eng, dnnl_stream_t st, const otl_node *n, const otl_tinfo *t,
                                      const int8_scales *q, const dnnl_memory_desc_t *want, dnnl_memory_t *out) {
    dnnl_dims_t wd;
    const int rank = otl_dnnl_conv_weights_dims(n, t, wd);
    dnnl_memory_desc_t plain;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&plain, rank, wd, dnnl_f32, rank == 5 ? dnnl_goihw : dnnl_oihw), "memory desc");
    /* the output channel is dimension 0, or the group and the channel in it (0 and 1) */
    const otl_dnnl_scales by = {q->weights, t[n->in[1]].dims[0], rank == 5 ? 3 : 1};
    return otl_dnnl_reorder_once(eng, st, &plain, t[n->in[1]].data, want, by, out);
}

/* The bias as the primitive adds it: to the int32 sums, before their
 * scaling, so for int8 in the sums' units (in_scale * weight scale). */
static onnxtl_status *make_bias(otl_dnnl_conv *c, dnnl_engine_t eng, const dnnl_memory_desc_t *bmd, const float *bias,
                                const otl_conv_arith *a, const int8_scales *q) {
    dnnl_status_t s;
    if (!q->weights) {
        s = dnnl_memory_create(&c->bias, bmd, eng, (void *)bias);
        return s == dnnl_success ? NULL : otl_dnnl_failed(s, "memory");
    }
    DNNL_TRY(dnnl_memory_create(&c->bias, bmd, eng, DNNL_MEMORY_ALLOCATE), "memory");
    float *scaled;
    DNNL_TRY(dnnl_memory_get_data_handle(c->bias, (void **)&scaled), "memory");
    const int64_t oc = (int64_t)(dnnl_memory_desc_get_size(bmd) / sizeof(float));
    for (int64_t o = 0; o < oc; o++) {
        const double b = (double)bias[o] * a->in_scale * q->weights[o];
        if (!(fabs(b) <= FLT_MAX))
            return otl_error(ONNXTL_ERR_ARG, "a bias of %g leaves float's range at int8 scale; run it in fp32", bias[o]);
        scaled[o] = (float)b;
    }
    return NULL;
}

/* The residual's conversion into dst's buffer, where it arrives in the other
 * size: int8 taken back to fp32, or fp32 quantised to its int8 type. */
static onnxtl_status *make_sum_conversion(otl_dnnl_conv *c, dnnl_engine_t eng, const otl_tinfo *y,
                                          const otl_conv_arith *a) {
    const dnnl_dims_t dd = {y->dims[0], y->dims[1], y->dims[2], y->dims[3]};
    dnnl_memory_desc_t from, to;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&from, 4, dd, a->skip, dnnl_nhwc), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&to, 4, dd, sum_type(a), dnnl_nhwc), "memory desc");
    DNNL_TRY(dnnl_memory_create(&c->sum, &to, eng, DNNL_MEMORY_NONE), "memory");
    const float scale = is_int8(a->skip) ? 1.0f / a->skip_scale : a->skip_scale;
    return otl_dnnl_conversion_init(&c->to_sum, eng, &from, &to, scale);
}

/* The reorder that converts the fp32 NHWC input into what the primitive reads. */
static onnxtl_status *make_conversion(otl_dnnl_conv *c, dnnl_engine_t eng, const dnnl_memory_desc_t *to_md,
                                      const otl_tinfo *x, const otl_conv_arith *a) {
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_memory_desc_t f32_md;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&f32_md, 4, sd, dnnl_f32, dnnl_nhwc), "memory desc");
    return otl_dnnl_conversion_init(&c->convert, eng, &f32_md, to_md, is_int8(a->multiply) ? a->in_scale : 1.0f);
}

/* The fused depthwise convolution's weights in the layout the primitive
 * chose, and its bias (zeros where it has none). */
static onnxtl_status *make_dw_params(otl_dnnl_conv *c, dnnl_engine_t eng, dnnl_primitive_desc_t pd, const otl_node *dw,
                                     const otl_tinfo *t) {
    const int64_t ch = t[dw->in[1]].dims[0];
    const dnnl_dims_t wd = {ch, 1, 1, 3, 3};
    dnnl_memory_desc_t plain;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&plain, 5, wd, dnnl_f32, dnnl_goihw), "memory desc");
    const dnnl_memory_desc_t *want =
        dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
    OTL_TRY(otl_dnnl_reorder_once(eng, c->stream, &plain, t[dw->in[1]].data, want, (otl_dnnl_scales){0}, &c->dw_weights));
    const dnnl_memory_desc_t *bmd =
        dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS);
    DNNL_TRY(dnnl_memory_create(&c->dw_bias, bmd, eng, DNNL_MEMORY_ALLOCATE), "memory");
    float *bias;
    DNNL_TRY(dnnl_memory_get_data_handle(c->dw_bias, (void **)&bias), "memory");
    const bool has_bias = dw->n_in > 2 && dw->in[2] >= 0;
    for (int64_t i = 0; i < ch; i++) bias[i] = has_bias ? ((const float *)t[dw->in[2]].data)[i] : 0.0f;
    return NULL;
}

/* Whether md is t's shape in NHWC, of the given type. */
static bool is_nhwc(const dnnl_memory_desc_t *md, const otl_tinfo *t, dnnl_data_type_t type) {
    const dnnl_dims_t d = {t->dims[0], t->dims[1], t->dims[2], t->dims[3]};
    dnnl_memory_desc_t nhwc;
    return dnnl_memory_desc_init_by_tag(&nhwc, 4, d, type, dnnl_nhwc) == dnnl_success && dnnl_memory_desc_equal(md, &nhwc);
}

/* The reorder of a blocked output into the NHWC dst. */
static onnxtl_status *make_dst_conversion(otl_dnnl_conv *c, dnnl_engine_t eng, const dnnl_memory_desc_t *dmd,
                                          const otl_tinfo *y) {
    const dnnl_dims_t dd = {y->dims[0], y->dims[1], y->dims[2], y->dims[3]};
    dnnl_memory_desc_t nhwc;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&nhwc, 4, dd, dnnl_f32, dnnl_nhwc), "memory desc");
    DNNL_TRY(dnnl_memory_create(&c->dst_nhwc, &nhwc, eng, DNNL_MEMORY_NONE), "memory");
    c->blocked_bytes = dnnl_memory_desc_get_size(dmd);
    return otl_dnnl_conversion_init(&c->from_dst, eng, dmd, &nhwc, 1.0f);
}

static onnxtl_status *build(otl_dnnl_conv *c, dnnl_engine_t eng, const otl_node *n, const otl_node *dw,
                            const otl_tinfo *t, const otl_conv_arith *a, const int8_scales *q) {
    dnnl_primitive_desc_t pd;
    OTL_TRY(make_primitive_desc(eng, n, dw, t, a, q, &pd));
    const otl_tinfo *y = &t[(dw ? dw : n)->out[0]];
    onnxtl_status *st = NULL;
    dnnl_status_t s = dnnl_primitive_create(&c->conv, pd);
    if (s != dnnl_success) st = otl_dnnl_failed(s, "convolution primitive");
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (!st) st = reorder_weights(eng, c->stream, n, t, q, wmd, &c->weights);
    if (!st && (s = dnnl_memory_create(&c->src, smd, eng, DNNL_MEMORY_NONE))) st = otl_dnnl_failed(s, "memory");
    if (!st && dw && (is_nhwc(smd, &t[n->in[0]], dnnl_f32) || is_nhwc(dmd, y, dnnl_f32)))
        st = otl_error(ONNXTL_ERR_UNSUPPORTED, "oneDNN fuses this depthwise convolution only in NHWC");
    if (!st && !is_nhwc(smd, &t[n->in[0]], dnnl_f32) && !a->in_held) st = make_conversion(c, eng, smd, &t[n->in[0]], a);
    if (!st && (s = dnnl_memory_create(&c->dst, dmd, eng, DNNL_MEMORY_NONE))) st = otl_dnnl_failed(s, "memory");
    if (!st && !is_nhwc(dmd, y, a->out)) st = make_dst_conversion(c, eng, dmd, y);
    if (!st && n->n_in > 2 && n->in[2] >= 0)
        st = make_bias(c, eng, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1), t[n->in[2]].data, a, q);
    if (!st && n->attrs.fused_add) {
        c->skip_bytes = (size_t)otl_tinfo_count(&t[n->out[0]]) * dnnl_data_type_size(a->skip);
        if (a->skip != sum_type(a)) st = make_sum_conversion(c, eng, &t[n->out[0]], a);
    }
    if (!st && dw) st = make_dw_params(c, eng, pd, dw, t);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Winograd F(4x4, 3x3) runs 3x3 convolutions of 64 channels or more 1.3 to
 * 2.8 times as fast as oneDNN's direct algorithm, and whole networks 5 to
 * 11% faster than oneDNN's own Winograd (AVX-512 only), whose reorders to
 * and from its blocked layout cost more than it saves; with fewer channels,
 * or fewer than 16 output tiles in the batch (its transformed weights then
 * read for too few tiles), it gains nothing or loses.  Measured on a 2-core
 * Xeon, in AVX-512 and with oneDNN capped at AVX2. */
static bool winograd_worth_it(const otl_node *n, const otl_tinfo *t, const otl_conv_arith *a) {
    const otl_tinfo *w = &t[n->in[1]], *y = &t[n->out[0]];
    const int64_t tiles = y->dims[0] * ((y->dims[2] + 3) / 4) * ((y->dims[3] + 3) / 4);
    return a->multiply == dnnl_f32 && a->out == dnnl_f32 && !a->in_held && w->dims[0] >= 64 && w->dims[1] >= 64 &&
           tiles >= 16;
}

/* The instruction set of onnxtl's Winograd kernels: oneDNN's, so that a cap
 * on it (ONEDNN_MAX_CPU_ISA) caps them too; false without AVX2 and FMA. */
static bool winograd_isa(otl_winograd_isa *isa) {
    const unsigned have = (unsigned)dnnl_get_effective_cpu_isa();
    const unsigned avx512 = (unsigned)dnnl_cpu_isa_avx512_core, avx2 = (unsigned)dnnl_cpu_isa_avx2;
    *isa = (have & avx512) == avx512 ? OTL_WINOGRAD_AVX512 : OTL_WINOGRAD_AVX2;
    return (have & avx2) == avx2 && __builtin_cpu_supports("fma");
}

/* The Winograd kernels that run n, if any: AVX-512 where the CPU has it and
 * the channels fill its vectors, else AVX2. */
static bool winograd_for(const otl_node *n, const otl_tinfo *t, const otl_conv_arith *a, otl_winograd_isa *isa) {
    if (!winograd_worth_it(n, t, a) || !winograd_isa(isa)) return false;
    if (*isa == OTL_WINOGRAD_AVX512 && !otl_winograd_supported(n, t, *isa)) *isa = OTL_WINOGRAD_AVX2;
    return otl_winograd_supported(n, t, *isa);
}

bool otl_dnnl_conv_winograd_fp32(const otl_node *n, const otl_tinfo *t) {
    const otl_conv_arith fp32 = OTL_CONV_FP32;
    otl_winograd_isa isa;
    return winograd_for(n, t, &fp32, &isa);
}

onnxtl_status *otl_dnnl_conv_create(dnnl_engine_t eng, dnnl_stream_t stream, const otl_node *n,
                                    const otl_tinfo *t, otl_conv_arith arith, otl_dnnl_conv **out) {
    otl_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) return otl_nomem();
    c->stream = stream;
    int8_scales q = {0};
    onnxtl_status *st = is_int8(arith.multiply) ? int8_scales_init(n, t, &arith, &q) : NULL;
    otl_winograd_isa isa;
    if (!st) st = winograd_for(n, t, &arith, &isa) ? otl_winograd_create(n, t, isa, &c->winograd)
                                                   : build(c, eng, n, NULL, t, &arith, &q);
    int8_scales_free(&q);
    if (st) {
        otl_dnnl_conv_release(c);
        return st;
    }
    *out = c;
    return NULL;
}

bool otl_dnnl_dw_fusable(const otl_node *n, const otl_node *dw, const otl_tinfo *t) {
    const otl_tinfo *w = &t[n->in[1]], *dw_w = &t[dw->in[1]];
    if (!otl_dnnl_conv_supported(n, t) || !otl_dnnl_conv_supported(dw, t) || n->attrs.group != 1 ||
        w->dims[2] != 1 || w->dims[3] != 1 || n->attrs.fused_add || dw->attrs.fused_add)
        return false;
    if (dw->in[0] != n->out[0] || dw_w->dims[0] != w->dims[0] || dw->attrs.group != w->dims[0] || dw_w->dims[1] != 1 ||
        dw_w->dims[2] != 3 || dw_w->dims[3] != 3)
        return false;
    otl_window a, b;
    onnxtl_status *st = otl_window_init(&n->attrs, 2, t[n->in[0]].dims + 2, w->dims + 2, false, &a);
    if (!st) st = otl_window_init(&dw->attrs, 2, t[dw->in[0]].dims + 2, dw_w->dims + 2, false, &b);
    if (st) {
        onnxtl_status_release(st);
        return false;
    }
    bool ok = true;
    for (int i = 1; i < 3; i++)
        ok = ok && a.stride[i] == 1 && a.pad_begin[i] == 0 && a.pad_end[i] == 0 && b.dilation[i] == 1 &&
             b.pad_begin[i] == 1 && b.pad_end[i] == 1 && (b.stride[i] == 1 || b.stride[i] == 2) &&
             b.stride[i] == b.stride[1];
    return ok;
}

onnxtl_status *otl_dnnl_conv_create_fused_dw(dnnl_engine_t eng, dnnl_stream_t stream, const otl_node *n,
                                             const otl_node *dw, const otl_tinfo *t, otl_dnnl_conv **out) {
    *out = NULL;
    otl_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) return otl_nomem();
    c->stream = stream;
    const otl_conv_arith fp32 = OTL_CONV_FP32;
    onnxtl_status *st = build(c, eng, n, dw, t, &fp32, &(int8_scales){0});
    if (st) { /* oneDNN has no fused kernel for this pair here: the two run apart */
        onnxtl_status_release(st);
        otl_dnnl_conv_release(c);
        return NULL;
    }
    *out = c;
    return NULL;
}

/* The converted input's room in the scratch, then the residual's copy. */
static size_t residual_offset(const otl_dnnl_conv *c) { return (c->convert.bytes + 63) & ~(size_t)63; }

size_t otl_dnnl_conv_scratch_bytes(const otl_dnnl_conv *c) {
    if (c->winograd) return otl_winograd_scratch_bytes(c->winograd);
    if (c->from_dst.reorder) return residual_offset(c) + c->blocked_bytes;
    return c->to_sum.reorder ? residual_offset(c) + c->skip_bytes : c->convert.bytes;
}

/* dst = the residual, in the type the sum reads.  A residual converted in
 * place (dst took over its dying buffer) is copied aside first: the two sizes
 * overlap. */
static onnxtl_status *place_residual(otl_dnnl_conv *c, const void *skip, void *dst, void *scratch) {
    if (!c->to_sum.reorder) {
        if (skip != dst) memcpy(dst, skip, c->skip_bytes);
        return NULL;
    }
    if (skip == dst) skip = memcpy((char *)scratch + residual_offset(c), skip, c->skip_bytes);
    return otl_dnnl_conversion_run(&c->to_sum, c->stream, skip, c->sum, dst);
}

onnxtl_status *otl_dnnl_conv_run(otl_dnnl_conv *c, const void *src, const void *skip, void *dst, void *scratch) {
    if (c->winograd) {
        otl_winograd_run(c->winograd, src, skip, dst, scratch);
        return NULL;
    }
    if (skip) OTL_TRY(place_residual(c, skip, dst, scratch));
    if (c->convert.reorder) {
        OTL_TRY(otl_dnnl_conversion_run(&c->convert, c->stream, src, c->src, scratch));
    } else {
        DNNL_TRY(dnnl_memory_set_data_handle(c->src, (void *)src), "set handle");
    }
    void *out = c->from_dst.reorder ? (char *)scratch + residual_offset(c) : dst;
    DNNL_TRY(dnnl_memory_set_data_handle(c->dst, out), "set handle");
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->weights}, {DNNL_ARG_DST, c->dst}};
    int n_args = 3;
    if (c->bias) args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->bias};
    if (c->dw_weights) {
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, c->dw_weights};
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, c->dw_bias};
    }
    DNNL_TRY(dnnl_primitive_execute(c->conv, c->stream, n_args, args), "convolution");
    if (c->from_dst.reorder) OTL_TRY(otl_dnnl_conversion_run(&c->from_dst, c->stream, out, c->dst_nhwc, dst));
    DNNL_TRY(dnnl_stream_wait(c->stream), "stream wait");
    return NULL;
}

void otl_dnnl_conv_release(otl_dnnl_conv *c) {
    if (!c) return;
    otl_winograd_release(c->winograd);
    if (c->conv) dnnl_primitive_destroy(c->conv);
    if (c->src) dnnl_memory_destroy(c->src);
    if (c->weights) dnnl_memory_destroy(c->weights);
    if (c->bias) dnnl_memory_destroy(c->bias);
    if (c->dst) dnnl_memory_destroy(c->dst);
    if (c->dw_weights) dnnl_memory_destroy(c->dw_weights);
    if (c->dw_bias) dnnl_memory_destroy(c->dw_bias);
    if (c->dst_nhwc) dnnl_memory_destroy(c->dst_nhwc);
    otl_dnnl_conversion_release(&c->from_dst);
    if (c->sum) dnnl_memory_destroy(c->sum);
    otl_dnnl_conversion_release(&c->convert);
    otl_dnnl_conversion_release(&c->to_sum);
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

const char *otl_cpu_winograd_isa(void) {
    otl_winograd_isa isa;
    return !winograd_isa(&isa) ? "none" : isa == OTL_WINOGRAD_AVX512 ? "avx512" : "avx2";
}

bool otl_cpu_u8_full_range(void) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    const unsigned vnni512 = (unsigned)dnnl_cpu_isa_avx512_core_vnni & ~(unsigned)dnnl_cpu_isa_avx512_core;
    const unsigned vnni256 = (unsigned)dnnl_cpu_isa_avx2_vnni & ~(unsigned)dnnl_cpu_isa_avx2;
    return (isa & vnni512) || (isa & vnni256);
}

bool otl_cpu_bf16_available(char *why, size_t n) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    if ((isa & bf16) == bf16) return true;
    snprintf(why, n, "--precision bf16 on the CPU needs AVX512_BF16 or AMX-BF16 instructions, which this CPU lacks "
                     "(oneDNN runs %s here); use fp32", otl_cpu_isa_name());
    return false;
}
