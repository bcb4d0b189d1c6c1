#include "dnnl_matmul.h"

#include <stdlib.h>

#include "dnnl_check.h"
#include "dnnl_post_ops.h"
#include "dnnl_reorder.h"

struct otl_dnnl_matmul {
    dnnl_stream_t stream;
    dnnl_primitive_t matmul;
    dnnl_memory_t src, weights, bias, dst;
    otl_dnnl_conversion to_bf16; /* unused (no bytes) in fp32 */
};

/* Rows: every dimension of A but the last. */
static int64_t rows_of(const otl_tinfo *a) {
    int64_t m = 1;
    for (int i = 0; i + 1 < a->rank; i++) m *= a->dims[i];
    return m;
}

/* The row the product adds: Gemm's C (times beta), or a MatMul's fused bias. */
static bool has_bias(const otl_node *n) {
    return n->n_in > 2 && n->in[2] >= 0 && (n->op == OP_MATMUL || n->attrs.beta != 0);
}

/* The bias, where it is a constant row every output row adds (or absent). */
static bool bias_is_row(const otl_node *n, const otl_tinfo *t, int64_t cols) {
    if (!has_bias(n)) return true;
    const otl_tinfo *c = &t[n->in[2]];
    const int64_t count = otl_tinfo_count(c);
    return c->data && c->dtype == ONNXTL_FLOAT && (count == 1 || (count == cols && c->dims[c->rank - 1] == cols));
}

bool otl_dnnl_matmul_supported(const otl_node *n, const otl_tinfo *t) {
    if ((n->op != OP_MATMUL && n->op != OP_GEMM) || n->n_in < 2) return false;
    const otl_tinfo *a = &t[n->in[0]], *b = &t[n->in[1]];
    if (a->dtype != ONNXTL_FLOAT || b->dtype != ONNXTL_FLOAT || !b->data || b->rank != 2 || a->rank < 2) return false;
    if (n->op == OP_GEMM && (n->attrs.trans_a || n->attrs.alpha != 1.0f || a->rank != 2)) return false;
    const bool trans = n->op == OP_GEMM && n->attrs.trans_b;
    const int64_t k = b->dims[trans], cols = b->dims[!trans];
    return a->dims[a->rank - 1] == k && rows_of(a) > 0 && k > 0 && cols > 0 && bias_is_row(n, t, cols);
}

/* The bias as the primitive's bias row, copied once. */
static onnxtl_status *make_bias(otl_dnnl_matmul *m, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t,
                                int64_t cols, dnnl_memory_desc_t *md) {
    const dnnl_dims_t dims = {1, cols};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(md, 2, dims, dnnl_f32, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_create(&m->bias, md, eng, DNNL_MEMORY_ALLOCATE), "memory");
    float *row;
    DNNL_TRY(dnnl_memory_get_data_handle(m->bias, (void **)&row), "get handle");
    const otl_tinfo *c = &t[n->in[2]];
    const float *from = c->data, scale = n->op == OP_GEMM ? n->attrs.beta : 1.0f;
    const bool one = otl_tinfo_count(c) == 1;
    for (int64_t j = 0; j < cols; j++) row[j] = scale * from[one ? 0 : j];
    return NULL;
}

/* The primitive for desc, with the layer's fused activation as its post-op. */
static onnxtl_status *make_primitive_desc(dnnl_engine_t eng, const otl_attrs *a, const dnnl_matmul_desc_t *desc,
                                          dnnl_primitive_desc_t *pd) {
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t ops = NULL;
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attr");
    dnnl_status_t s = dnnl_post_ops_create(&ops);
    onnxtl_status *st = s == dnnl_success ? otl_dnnl_append_activation(a, ops) : otl_dnnl_failed(s, "post ops");
    if (!st && (s = dnnl_primitive_attr_set_post_ops(attr, ops))) st = otl_dnnl_failed(s, "post ops");
    if (!st && (s = dnnl_primitive_desc_create(pd, desc, attr, eng, NULL))) st = otl_dnnl_failed(s, "matmul primitive");
    if (ops) dnnl_post_ops_destroy(ops);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static onnxtl_status *build(otl_dnnl_matmul *m, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, bool bf16) {
    const otl_tinfo *b = &t[n->in[1]];
    const bool trans = n->op == OP_GEMM && n->attrs.trans_b;
    const int64_t k = b->dims[trans], cols = b->dims[!trans];
    const dnnl_dims_t sd = {rows_of(&t[n->in[0]]), k}, wd = {k, cols}, dd = {sd[0], cols};
    const dnnl_data_type_t math = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src_f32, src, w_plain, w, dst;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&src_f32, 2, sd, dnnl_f32, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&src, 2, sd, math, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_plain, 2, wd, dnnl_f32, trans ? dnnl_ba : dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w, 2, wd, math, dnnl_format_tag_any), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab), "memory desc");
    dnnl_memory_desc_t bias;
    if (has_bias(n)) OTL_TRY(make_bias(m, eng, n, t, cols, &bias));
    dnnl_matmul_desc_t desc;
    DNNL_TRY(dnnl_matmul_desc_init(&desc, &src, &w, m->bias ? &bias : NULL, &dst), "matmul desc");
    dnnl_primitive_desc_t pd;
    OTL_TRY(make_primitive_desc(eng, &n->attrs, &desc, &pd));
    dnnl_status_t s = dnnl_primitive_create(&m->matmul, pd);
    const dnnl_memory_desc_t *packed = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    onnxtl_status *st = s == dnnl_success ? otl_dnnl_reorder_once(eng, m->stream, &w_plain, b->data, packed,
                                                                                (otl_dnnl_scales){0}, &m->weights)
                                          : otl_dnnl_failed(s, "matmul primitive");
    dnnl_primitive_desc_destroy(pd);
    OTL_TRY(st);
    DNNL_TRY(dnnl_memory_create(&m->src, &src, eng, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&m->dst, &dst, eng, DNNL_MEMORY_NONE), "memory");
    return bf16 ? otl_dnnl_conversion_init(&m->to_bf16, eng, &src_f32, &src, 1.0f) : NULL;
}

onnxtl_status *otl_dnnl_matmul_create(dnnl_engine_t eng, dnnl_stream_t stream, const otl_node *n, const otl_tinfo *t,
                                      bool bf16, otl_dnnl_matmul **out) {
    otl_dnnl_matmul *m = calloc(1, sizeof *m);
    if (!m) return otl_nomem();
    m->stream = stream;
    onnxtl_status *st = build(m, eng, n, t, bf16);
    if (st) {
        otl_dnnl_matmul_release(m);
        return st;
    }
    *out = m;
    return NULL;
}

size_t otl_dnnl_matmul_scratch_bytes(const otl_dnnl_matmul *m) { return m->to_bf16.bytes; }

onnxtl_status *otl_dnnl_matmul_run(otl_dnnl_matmul *m, const float *a, float *y, void *scratch) {
    if (m->to_bf16.reorder) OTL_TRY(otl_dnnl_conversion_run(&m->to_bf16, m->stream, a, m->src, scratch));
    else DNNL_TRY(dnnl_memory_set_data_handle(m->src, (void *)a), "set handle");
    DNNL_TRY(dnnl_memory_set_data_handle(m->dst, y), "set handle");
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->weights}, {DNNL_ARG_DST, m->dst}, {DNNL_ARG_BIAS, m->bias}};
    DNNL_TRY(dnnl_primitive_execute(m->matmul, m->stream, m->bias ? 4 : 3, args), "matmul");
    DNNL_TRY(dnnl_stream_wait(m->stream), "stream wait");
    return NULL;
}

void otl_dnnl_matmul_release(otl_dnnl_matmul *m) {
    if (!m) return;
    if (m->matmul) dnnl_primitive_destroy(m->matmul);
    otl_dnnl_conversion_release(&m->to_bf16);
    if (m->src) dnnl_memory_destroy(m->src);
    if (m->weights) dnnl_memory_destroy(m->weights);
    if (m->bias) dnnl_memory_destroy(m->bias);
    if (m->dst) dnnl_memory_destroy(m->dst);
    free(m);
}
