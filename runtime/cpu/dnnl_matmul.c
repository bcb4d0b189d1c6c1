#include "dnnl_matmul.h"

#include <stdlib.h>

#include "dnnl_check.h"

struct otl_dnnl_matmul {
    dnnl_stream_t stream;
    dnnl_primitive_t matmul, to_bf16;
    dnnl_memory_t src_f32, src, weights, dst;
    size_t scratch_bytes;
};

/* Rows: every dimension of A but the last. */
static int64_t rows_of(const otl_tinfo *a) {
    int64_t m = 1;
    for (int i = 0; i + 1 < a->rank; i++) m *= a->dims[i];
    return m;
}

bool otl_dnnl_matmul_supported(const otl_node *n, const otl_tinfo *t) {
    const otl_tinfo *a = &t[n->in[0]], *b = &t[n->in[1]];
    return n->op == OP_MATMUL && a->dtype == ONNXTL_FLOAT && b->dtype == ONNXTL_FLOAT && b->data && b->rank == 2 &&
           a->rank >= 2 && a->dims[a->rank - 1] == b->dims[0] && rows_of(a) > 0 && b->dims[0] > 0 && b->dims[1] > 0;
}

static onnxtl_status *reorder_once(dnnl_engine_t eng, dnnl_stream_t st, const dnnl_memory_desc_t *from_md,
                                   const void *from, dnnl_memory_t to) {
    const dnnl_memory_desc_t *to_md;
    DNNL_TRY(dnnl_memory_get_memory_desc(to, &to_md), "memory desc");
    dnnl_memory_t src;
    DNNL_TRY(dnnl_memory_create(&src, from_md, eng, (void *)from), "memory");
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t r = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from_md, eng, to_md, eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&r, pd), dnnl_primitive_desc_destroy(pd);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, to}};
        s = dnnl_primitive_execute(r, st, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(st);
    }
    if (r) dnnl_primitive_destroy(r);
    dnnl_memory_destroy(src);
    DNNL_TRY(s, "weight reorder");
    return NULL;
}

static onnxtl_status *build(otl_dnnl_matmul *m, dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t) {
    const otl_tinfo *b = &t[n->in[1]];
    const dnnl_dims_t sd = {rows_of(&t[n->in[0]]), b->dims[0]}, wd = {b->dims[0], b->dims[1]}, dd = {sd[0], wd[1]};
    dnnl_memory_desc_t src_f32, src, w_plain, w, dst;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&src_f32, 2, sd, dnnl_f32, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_bf16, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_plain, 2, wd, dnnl_f32, dnnl_ab), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w, 2, wd, dnnl_bf16, dnnl_format_tag_any), "memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab), "memory desc");
    dnnl_matmul_desc_t desc;
    DNNL_TRY(dnnl_matmul_desc_init(&desc, &src, &w, NULL, &dst), "matmul desc");
    dnnl_primitive_desc_t pd, rpd;
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL), "matmul primitive");
    dnnl_status_t s = dnnl_primitive_create(&m->matmul, pd);
    const dnnl_memory_desc_t *packed = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (s == dnnl_success) s = dnnl_memory_create(&m->weights, packed, eng, DNNL_MEMORY_ALLOCATE);
    dnnl_primitive_desc_destroy(pd);
    DNNL_TRY(s, "matmul primitive");
    OTL_TRY(reorder_once(eng, m->stream, &w_plain, b->data, m->weights));
    DNNL_TRY(dnnl_memory_create(&m->src_f32, &src_f32, eng, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&m->src, &src, eng, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&m->dst, &dst, eng, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &src_f32, eng, &src, eng, NULL), "bf16 reorder");
    s = dnnl_primitive_create(&m->to_bf16, rpd);
    dnnl_primitive_desc_destroy(rpd);
    DNNL_TRY(s, "bf16 reorder");
    m->scratch_bytes = dnnl_memory_desc_get_size(&src);
    return NULL;
}

onnxtl_status *otl_dnnl_matmul_create(dnnl_engine_t eng, dnnl_stream_t stream, const otl_node *n, const otl_tinfo *t,
                                      otl_dnnl_matmul **out) {
    otl_dnnl_matmul *m = calloc(1, sizeof *m);
    if (!m) return otl_nomem();
    m->stream = stream;
    onnxtl_status *st = build(m, eng, n, t);
    if (st) {
        otl_dnnl_matmul_release(m);
        return st;
    }
    *out = m;
    return NULL;
}

size_t otl_dnnl_matmul_scratch_bytes(const otl_dnnl_matmul *m) { return m->scratch_bytes; }

onnxtl_status *otl_dnnl_matmul_run(otl_dnnl_matmul *m, const float *a, float *y, void *scratch) {
    DNNL_TRY(dnnl_memory_set_data_handle(m->src_f32, (void *)a), "set handle");
    DNNL_TRY(dnnl_memory_set_data_handle(m->src, scratch), "set handle");
    DNNL_TRY(dnnl_memory_set_data_handle(m->dst, y), "set handle");
    dnnl_exec_arg_t round[] = {{DNNL_ARG_FROM, m->src_f32}, {DNNL_ARG_TO, m->src}};
    DNNL_TRY(dnnl_primitive_execute(m->to_bf16, m->stream, 2, round), "bf16 reorder");
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->weights}, {DNNL_ARG_DST, m->dst}};
    DNNL_TRY(dnnl_primitive_execute(m->matmul, m->stream, 3, args), "matmul");
    DNNL_TRY(dnnl_stream_wait(m->stream), "stream wait");
    return NULL;
}

void otl_dnnl_matmul_release(otl_dnnl_matmul *m) {
    if (!m) return;
    if (m->matmul) dnnl_primitive_destroy(m->matmul);
    if (m->to_bf16) dnnl_primitive_destroy(m->to_bf16);
    if (m->src_f32) dnnl_memory_destroy(m->src_f32);
    if (m->src) dnnl_memory_destroy(m->src);
    if (m->weights) dnnl_memory_destroy(m->weights);
    if (m->dst) dnnl_memory_destroy(m->dst);
    free(m);
}
