#include "dnnl_pool_train.h"

#include <stdlib.h>

#include "dnnl_check.h"
#include "dnnl_conv.h"
#include "dnnl_operand.h"

struct otl_train_pool {
    dnnl_primitive_t forward, backward;
    otl_dnnl_operand src, dst, diff_dst, diff_src;
    dnnl_memory_t record; /* MaxPool's: where each maximum was; NULL for AveragePool */
    size_t forward_bytes, backward_bytes;
};

/* The window of n and its geometry as oneDNN takes it. */
typedef struct {
    otl_window w;
    dnnl_dims_t strides, kernel, dil, pl, pr;
} pool_geometry;

static onnxtl_status *geometry_init(pool_geometry *g, const otl_node *n, const otl_tinfo *t) {
    const otl_attrs *at = &n->attrs;
    OTL_TRY(otl_window_init(at, 2, t[n->in[0]].dims + 2, at->kernel, at->ceil_mode, &g->w));
    otl_dnnl_window_geometry(&g->w, g->strides, g->dil, g->pl, g->pr);
    for (int i = 0; i < 2; i++) g->kernel[i] = g->w.kernel[1 + i];
    return NULL;
}

/* oneDNN divides an including-pads average by the whole kernel, ONNX by the
 * part inside input and explicit pads: they differ on a window that
 * ceil_mode hangs past the pads. */
static bool divisor_agrees(const otl_node *n, const pool_geometry *g) {
    if (n->op != OP_AVGPOOL || !n->attrs.count_include_pad) return true;
    return g->pr[0] <= g->w.pad_end[1] && g->pr[1] <= g->w.pad_end[2];
}

bool otl_train_pool_supported(const otl_node *n, const otl_tinfo *t) {
    if ((n->op != OP_MAXPOOL && n->op != OP_AVGPOOL) || t[n->in[0]].dtype != ONNXTL_FLOAT ||
        t[n->in[0]].rank != 4 || (n->n_out > 1 && n->out[1] >= 0))
        return false;
    pool_geometry g;
    onnxtl_status *st = geometry_init(&g, n, t);
    if (st) {
        onnxtl_status_release(st);
        return false;
    }
    return g.pr[0] >= 0 && g.pr[1] >= 0 && divisor_agrees(n, &g);
}

static dnnl_alg_kind_t algorithm(const otl_node *n) {
    if (n->op == OP_MAXPOOL) return dnnl_pooling_max;
    return n->attrs.count_include_pad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding;
}

static onnxtl_status *nchw_desc(dnnl_memory_desc_t *md, const otl_tinfo *x) {
    const dnnl_dims_t d = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw), "memory desc");
    return NULL;
}

/* The forward and backward descriptors, on the tape's layouts. */
static onnxtl_status *make_descs(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t,
                                 const dnnl_memory_desc_t *smd, const dnnl_memory_desc_t *dmd,
                                 dnnl_primitive_desc_t pd[2]) {
    pool_geometry g;
    OTL_TRY(geometry_init(&g, n, t));
    dnnl_pooling_v2_desc_t fd, bd;
    DNNL_TRY(dnnl_pooling_v2_forward_desc_init(&fd, dnnl_forward_training, algorithm(n), smd, dmd, g.strides, g.kernel,
                                               g.dil, g.pl, g.pr),
             "pooling desc");
    DNNL_TRY(dnnl_primitive_desc_create(&pd[0], &fd, NULL, eng, NULL), "pooling primitive");
    DNNL_TRY(dnnl_pooling_v2_backward_desc_init(&bd, algorithm(n), smd, dmd, g.strides, g.kernel, g.dil, g.pl, g.pr),
             "pooling desc");
    DNNL_TRY(dnnl_primitive_desc_create(&pd[1], &bd, NULL, eng, pd[0]), "pooling backward primitive");
    return NULL;
}

static onnxtl_status *make_operands(otl_train_pool *p, dnnl_engine_t eng, const dnnl_memory_desc_t *smd,
                                    const dnnl_memory_desc_t *dmd, dnnl_primitive_desc_t pd[2]) {
    size_t *f = &p->forward_bytes, *b = &p->backward_bytes;
    OTL_TRY(otl_dnnl_operand_init(&p->src, eng, smd, pd[0], dnnl_query_src_md, OTL_OPERAND_IN, f));
    OTL_TRY(otl_dnnl_operand_init(&p->dst, eng, dmd, pd[0], dnnl_query_dst_md, OTL_OPERAND_OUT, f));
    OTL_TRY(otl_dnnl_operand_init(&p->diff_dst, eng, dmd, pd[1], dnnl_query_diff_dst_md, OTL_OPERAND_IN, b));
    OTL_TRY(otl_dnnl_operand_init(&p->diff_src, eng, smd, pd[1], dnnl_query_diff_src_md, OTL_OPERAND_ADDED, b));
    const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(pd[0], dnnl_query_workspace_md, 0);
    if (ws && dnnl_memory_desc_get_size(ws) > 0)
        DNNL_TRY(dnnl_memory_create(&p->record, ws, eng, DNNL_MEMORY_ALLOCATE), "pooling workspace");
    return NULL;
}

static onnxtl_status *build(otl_train_pool *p, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t) {
    dnnl_memory_desc_t smd, dmd;
    OTL_TRY(nchw_desc(&smd, &t[n->in[0]]));
    OTL_TRY(nchw_desc(&dmd, &t[n->out[0]]));
    dnnl_primitive_desc_t pd[2] = {0};
    onnxtl_status *st = make_descs(eng, n, t, &smd, &dmd, pd);
    if (!st) st = make_operands(p, eng, &smd, &dmd, pd);
    dnnl_primitive_t *prim[2] = {&p->forward, &p->backward};
    for (int i = 0; i < 2 && !st; i++) {
        dnnl_status_t s = dnnl_primitive_create(prim[i], pd[i]);
        if (s != dnnl_success) st = otl_dnnl_failed(s, "pooling primitive");
    }
    for (int i = 0; i < 2; i++)
        if (pd[i]) dnnl_primitive_desc_destroy(pd[i]);
    return st;
}

onnxtl_status *otl_train_pool_create(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, otl_train_pool **out) {
    otl_train_pool *p = calloc(1, sizeof *p);
    if (!p) return otl_nomem();
    onnxtl_status *st = build(p, eng, n, t);
    if (st) {
        otl_train_pool_release(p);
        return st;
    }
    *out = p;
    return NULL;
}

size_t otl_train_pool_scratch_bytes(const otl_train_pool *p) {
    return p->forward_bytes > p->backward_bytes ? p->forward_bytes : p->backward_bytes;
}

onnxtl_status *otl_train_pool_forward(otl_train_pool *p, dnnl_stream_t st, const otl_kernel_args *a) {
    char *scratch = (char *)a->workspace;
    OTL_TRY(otl_dnnl_operand_bind(&p->src, st, a->in[0], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&p->dst, st, a->out[0], scratch));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, p->src.inner}, {DNNL_ARG_DST, p->dst.inner},
                               {DNNL_ARG_WORKSPACE, p->record}};
    DNNL_TRY(dnnl_primitive_execute(p->forward, st, p->record ? 3 : 2, args), "pooling");
    OTL_TRY(otl_dnnl_operand_finish(&p->dst, st));
    DNNL_TRY(dnnl_stream_wait(st), "pooling");
    return NULL;
}

onnxtl_status *otl_train_pool_backward(otl_train_pool *p, dnnl_stream_t st, const otl_grad_args *a) {
    if (!a->din[0]) return NULL;
    char *scratch = (char *)a->f.workspace;
    OTL_TRY(otl_dnnl_operand_bind(&p->diff_dst, st, a->dout[0], scratch));
    OTL_TRY(otl_dnnl_operand_bind(&p->diff_src, st, a->din[0], scratch));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, p->diff_dst.inner}, {DNNL_ARG_DIFF_SRC, p->diff_src.inner},
                               {DNNL_ARG_WORKSPACE, p->record}};
    DNNL_TRY(dnnl_primitive_execute(p->backward, st, p->record ? 3 : 2, args), "pooling backward");
    OTL_TRY(otl_dnnl_operand_finish(&p->diff_src, st));
    DNNL_TRY(dnnl_stream_wait(st), "pooling backward");
    return NULL;
}

void otl_train_pool_release(otl_train_pool *p) {
    if (!p) return;
    if (p->forward) dnnl_primitive_destroy(p->forward);
    if (p->backward) dnnl_primitive_destroy(p->backward);
    otl_dnnl_operand *o[] = {&p->src, &p->dst, &p->diff_dst, &p->diff_src};
    for (size_t i = 0; i < sizeof o / sizeof *o; i++) otl_dnnl_operand_release(o[i]);
    if (p->record) dnnl_memory_destroy(p->record);
    free(p);
}
