#include "dnnl_conv_train.h"

#include <stdlib.h>

#include "dnnl_check.h"
#include "dnnl_conv.h"
#include "dnnl_operand.h"

struct otl_train_conv {
    dnnl_primitive_t forward, backward_data, backward_weights;
    otl_dnnl_operand src, weights, dst;                    /* the forward's */
    otl_dnnl_operand diff_dst, data_weights, diff_src;     /* backward data's */
    otl_dnnl_operand weights_src, weights_diff_dst, diff_weights; /* backward weights' */
    dnnl_memory_t bias, diff_bias;                /* plain; diff_bias in the scratch, summed into the tape's */
    size_t diff_bias_at;
    bool diff_dst_shared; /* both backward primitives read dY in one layout: reordered once */
    size_t forward_bytes, backward_bytes;
};

bool otl_train_conv_supported(const otl_node *n, const otl_tinfo *t) {
    const otl_attrs *a = &n->attrs;
    return otl_dnnl_conv_supported(n, t) && t[n->in[1]].rank == 4 && !a->fused_relu && !a->fused_act &&
           !a->fused_add && !a->residual_add;
}

static bool has_bias(const otl_node *n) { return n->n_in > 2 && n->in[2] >= 0; }

/* The memory descriptors of a Conv's operands: in the tape's ONNX order
 * (plain), or with every layout left to oneDNN. */
typedef struct {
    dnnl_memory_desc_t src, weights, dst, bias;
} conv_mds;

static onnxtl_status *conv_mds_init(conv_mds *m, const otl_node *n, const otl_tinfo *t, bool plain) {
    const otl_tinfo *x = &t[n->in[0]], *y = &t[n->out[0]];
    const dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    const dnnl_dims_t dd = {y->dims[0], y->dims[1], y->dims[2], y->dims[3]}, bd = {y->dims[1]};
    dnnl_dims_t wd;
    const int w_rank = otl_dnnl_conv_weights_dims(n, t, wd);
    const dnnl_format_tag_t act = plain ? dnnl_nchw : dnnl_format_tag_any;
    const dnnl_format_tag_t w = !plain ? dnnl_format_tag_any : w_rank == 5 ? dnnl_goihw : dnnl_oihw;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->src, 4, sd, dnnl_f32, act), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->weights, w_rank, wd, dnnl_f32, w), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->dst, 4, dd, dnnl_f32, act), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->bias, 1, bd, dnnl_f32, dnnl_a), "memory desc");
    return NULL;
}

/* The three primitive descriptors, every layout left to oneDNN. */
static onnxtl_status *make_descs(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, dnnl_primitive_desc_t pd[3]) {
    conv_mds m;
    OTL_TRY(conv_mds_init(&m, n, t, false));
    dnnl_dims_t strides, dil, pl, pr;
    OTL_TRY(otl_dnnl_conv_geometry(n, t, strides, dil, pl, pr));
    const dnnl_memory_desc_t *b = has_bias(n) ? &m.bias : NULL;
    dnnl_convolution_desc_t fd, dd, wd;
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &m.src,
                                                        &m.weights, b, &m.dst, strides, dil, pl, pr),
             "convolution desc");
    DNNL_TRY(dnnl_primitive_desc_create(&pd[0], &fd, NULL, eng, NULL), "convolution primitive");
    DNNL_TRY(dnnl_dilated_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &m.src, &m.weights, &m.dst,
                                                              strides, dil, pl, pr),
             "convolution desc");
    DNNL_TRY(dnnl_primitive_desc_create(&pd[1], &dd, NULL, eng, pd[0]), "convolution backward data primitive");
    DNNL_TRY(dnnl_dilated_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &m.src, &m.weights, b,
                                                                 &m.dst, strides, dil, pl, pr),
             "convolution desc");
    DNNL_TRY(dnnl_primitive_desc_create(&pd[2], &wd, NULL, eng, pd[0]), "convolution backward weights primitive");
    return NULL;
}

/* The operands of the three primitives, against the tape's plain layouts. */
static onnxtl_status *make_operands(otl_train_conv *c, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t,
                                    dnnl_primitive_desc_t pd[3]) {
    conv_mds m;
    OTL_TRY(conv_mds_init(&m, n, t, true));
    size_t *f = &c->forward_bytes, *b = &c->backward_bytes;
    OTL_TRY(otl_dnnl_operand_init(&c->src, eng, &m.src, pd[0], dnnl_query_src_md, OTL_OPERAND_IN, f));
    OTL_TRY(otl_dnnl_operand_init(&c->weights, eng, &m.weights, pd[0], dnnl_query_weights_md, OTL_OPERAND_IN, f));
    OTL_TRY(otl_dnnl_operand_init(&c->dst, eng, &m.dst, pd[0], dnnl_query_dst_md, OTL_OPERAND_OUT, f));
    OTL_TRY(otl_dnnl_operand_init(&c->diff_dst, eng, &m.dst, pd[1], dnnl_query_diff_dst_md, OTL_OPERAND_IN, b));
    OTL_TRY(otl_dnnl_operand_init(&c->data_weights, eng, &m.weights, pd[1], dnnl_query_weights_md, OTL_OPERAND_IN, b));
    OTL_TRY(otl_dnnl_operand_init(&c->diff_src, eng, &m.src, pd[1], dnnl_query_diff_src_md, OTL_OPERAND_ADDED, b));
    c->diff_dst_shared = dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd[1], dnnl_query_diff_dst_md, 0),
                                                dnnl_primitive_desc_query_md(pd[2], dnnl_query_diff_dst_md, 0));
    if (!c->diff_dst_shared)
        OTL_TRY(otl_dnnl_operand_init(&c->weights_diff_dst, eng, &m.dst, pd[2], dnnl_query_diff_dst_md, OTL_OPERAND_IN, b));
    OTL_TRY(otl_dnnl_operand_init(&c->weights_src, eng, &m.src, pd[2], dnnl_query_src_md, OTL_OPERAND_IN, b));
    OTL_TRY(otl_dnnl_operand_init(&c->diff_weights, eng, &m.weights, pd[2], dnnl_query_diff_weights_md, OTL_OPERAND_ADDED, b));
    if (!has_bias(n)) return NULL;
    DNNL_TRY(dnnl_memory_create(&c->bias, &m.bias, eng, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&c->diff_bias, &m.bias, eng, DNNL_MEMORY_NONE), "memory");
    c->diff_bias_at = *b;
    *b += otl_dnnl_round_up64(dnnl_memory_desc_get_size(&m.bias));
    return NULL;
}

static onnxtl_status *build(otl_train_conv *c, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t) {
    dnnl_primitive_desc_t pd[3] = {0};
    onnxtl_status *st = make_descs(eng, n, t, pd);
    if (!st) st = make_operands(c, eng, n, t, pd);
    dnnl_primitive_t *p[3] = {&c->forward, &c->backward_data, &c->backward_weights};
    for (int i = 0; i < 3 && !st; i++) {
        dnnl_status_t s = dnnl_primitive_create(p[i], pd[i]);
        if (s != dnnl_success) st = otl_dnnl_failed(s, "convolution primitive");
    }
    for (int i = 0; i < 3; i++)
        if (pd[i]) dnnl_primitive_desc_destroy(pd[i]);
    return st;
}

onnxtl_status *otl_train_conv_create(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, otl_train_conv **out) {
    otl_train_conv *c = calloc(1, sizeof *c);
    if (!c) return otl_nomem();
    onnxtl_status *st = build(c, eng, n, t);
    if (st) {
        otl_train_conv_release(c);
        return st;
    }
    *out = c;
    return NULL;
}

size_t otl_train_conv_scratch_bytes(const otl_train_conv *c) {
    return c->forward_bytes > c->backward_bytes ? c->forward_bytes : c->backward_bytes;
}

onnxtl_status *otl_train_conv_forward(otl_train_conv *c, dnnl_stream_t st, const otl_kernel_args *a) {
    char *scratch = (char *)a->workspace;
    OTL_TRY(otl_dnnl_operand_bind(&c->src, st, a->in[0], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&c->weights, st, a->in[1], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&c->dst, st, a->out[0], scratch));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->src.inner}, {DNNL_ARG_WEIGHTS, c->weights.inner},
                               {DNNL_ARG_DST, c->dst.inner}, {DNNL_ARG_BIAS, c->bias}};
    if (c->bias) DNNL_TRY(dnnl_memory_set_data_handle(c->bias, (void *)a->in[2]), "set handle");
    DNNL_TRY(dnnl_primitive_execute(c->forward, st, c->bias ? 4 : 3, args), "convolution");
    OTL_TRY(otl_dnnl_operand_finish(&c->dst, st));
    DNNL_TRY(dnnl_stream_wait(st), "convolution");
    return NULL;
}

static onnxtl_status *backward_data(otl_train_conv *c, dnnl_stream_t st, const otl_grad_args *a, char *scratch) {
    OTL_TRY(otl_dnnl_operand_bind(&c->data_weights, st, a->f.in[1], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&c->diff_src, st, a->din[0], scratch));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, c->diff_dst.inner}, {DNNL_ARG_WEIGHTS, c->data_weights.inner},
                              {DNNL_ARG_DIFF_SRC, c->diff_src.inner}};
    DNNL_TRY(dnnl_primitive_execute(c->backward_data, st, 3, args), "convolution backward data");
    return otl_dnnl_operand_finish(&c->diff_src, st);
}

static onnxtl_status *backward_weights(otl_train_conv *c, dnnl_stream_t st, const otl_grad_args *a, char *scratch) {
    const otl_dnnl_operand *dy = c->diff_dst_shared ? &c->diff_dst : &c->weights_diff_dst;
    if (!c->diff_dst_shared) OTL_TRY(otl_dnnl_operand_bind(dy, st, a->dout[0], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&c->weights_src, st, a->f.in[0], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&c->diff_weights, st, a->din[1], scratch));
    float *db = c->diff_bias ? (float *)(scratch + c->diff_bias_at) : NULL;
    if (db) DNNL_TRY(dnnl_memory_set_data_handle(c->diff_bias, db), "set handle");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, dy->inner}, {DNNL_ARG_SRC, c->weights_src.inner},
                               {DNNL_ARG_DIFF_WEIGHTS, c->diff_weights.inner}, {DNNL_ARG_DIFF_BIAS, c->diff_bias}};
    DNNL_TRY(dnnl_primitive_execute(c->backward_weights, st, db ? 4 : 3, args), "convolution backward weights");
    if (a->din[1]) OTL_TRY(otl_dnnl_operand_finish(&c->diff_weights, st));
    DNNL_TRY(dnnl_stream_wait(st), "convolution backward weights");
    if (db && a->din[2]) {
        const int64_t m = a->f.t[a->f.n->out[0]].dims[1];
        for (int64_t o = 0; o < m; o++) a->din[2][o] += db[o];
    }
    return NULL;
}

onnxtl_status *otl_train_conv_backward(otl_train_conv *c, dnnl_stream_t st, const otl_grad_args *a) {
    char *scratch = (char *)a->f.workspace;
    const bool weights = a->din[1] || (c->diff_bias && a->din[2]);
    if (!a->din[0] && !weights) return NULL;
    OTL_TRY(otl_dnnl_operand_bind(&c->diff_dst, st, a->dout[0], scratch));
    if (a->din[0]) OTL_TRY(backward_data(c, st, a, scratch));
    if (weights) OTL_TRY(backward_weights(c, st, a, scratch));
    DNNL_TRY(dnnl_stream_wait(st), "convolution backward");
    return NULL;
}

void otl_train_conv_release(otl_train_conv *c) {
    if (!c) return;
    dnnl_primitive_t p[] = {c->forward, c->backward_data, c->backward_weights};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (p[i]) dnnl_primitive_destroy(p[i]);
    otl_dnnl_operand *o[] = {&c->src, &c->weights, &c->dst, &c->diff_dst, &c->data_weights, &c->diff_src,
                    &c->weights_src, &c->weights_diff_dst, &c->diff_weights};
    for (size_t i = 0; i < sizeof o / sizeof *o; i++) otl_dnnl_operand_release(o[i]);
    if (c->bias) dnnl_memory_destroy(c->bias);
    if (c->diff_bias) dnnl_memory_destroy(c->diff_bias);
    free(c);
}
