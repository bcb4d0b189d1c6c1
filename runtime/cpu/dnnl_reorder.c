#include "dnnl_reorder.h"

#include "dnnl_check.h"

dnnl_status_t otl_dnnl_reorder_create(dnnl_engine_t eng, const dnnl_memory_desc_t *from_md,
                                     const dnnl_memory_desc_t *to_md, otl_dnnl_scales scales, bool add,
                                     dnnl_primitive_t *out) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_status_t s = dnnl_success;
    if ((scales.scales || add) && (s = dnnl_primitive_attr_create(&attr)) == dnnl_success && scales.scales)
        s = dnnl_primitive_attr_set_output_scales(attr, scales.count, scales.mask, scales.scales);
    if (s == dnnl_success && add && (s = dnnl_post_ops_create(&ops)) == dnnl_success &&
        (s = dnnl_post_ops_append_sum(ops, 1.0f)) == dnnl_success)
        s = dnnl_primitive_attr_set_post_ops(attr, ops);
    dnnl_primitive_desc_t pd;
    if (s == dnnl_success && (s = dnnl_reorder_primitive_desc_create(&pd, from_md, eng, to_md, eng, attr)) == dnnl_success) {
        s = dnnl_primitive_create(out, pd);
        dnnl_primitive_desc_destroy(pd);
    }
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

onnxtl_status *otl_dnnl_reorder_once(dnnl_engine_t eng, dnnl_stream_t st, const dnnl_memory_desc_t *from_md,
                                     const void *from, const dnnl_memory_desc_t *to_md, otl_dnnl_scales scales,
                                     dnnl_memory_t *out) {
    DNNL_TRY(dnnl_memory_create(out, to_md, eng, DNNL_MEMORY_ALLOCATE), "memory");
    dnnl_memory_t src;
    DNNL_TRY(dnnl_memory_create(&src, from_md, eng, (void *)from), "memory");
    dnnl_primitive_t r = NULL;
    dnnl_status_t s = otl_dnnl_reorder_create(eng, from_md, to_md, scales, false, &r);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, *out}};
        s = dnnl_primitive_execute(r, st, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(st);
    }
    if (r) dnnl_primitive_destroy(r);
    dnnl_memory_destroy(src);
    return s == dnnl_success ? NULL : otl_dnnl_failed(s, "weight reorder");
}

onnxtl_status *otl_dnnl_conversion_init(otl_dnnl_conversion *r, dnnl_engine_t eng, const dnnl_memory_desc_t *f32_md,
                                      const dnnl_memory_desc_t *to_md, float scale) {
    DNNL_TRY(dnnl_memory_create(&r->f32, f32_md, eng, DNNL_MEMORY_NONE), "memory");
    const otl_dnnl_scales by = {scale != 1.0f ? &scale : NULL, 1, 0};
    DNNL_TRY(otl_dnnl_reorder_create(eng, f32_md, to_md, by, false, &r->reorder), "input conversion");
    r->bytes = dnnl_memory_desc_get_size(to_md);
    return NULL;
}

onnxtl_status *otl_dnnl_conversion_run(const otl_dnnl_conversion *r, dnnl_stream_t st, const void *src,
                                     dnnl_memory_t to, void *scratch) {
    DNNL_TRY(dnnl_memory_set_data_handle(r->f32, (void *)src), "set handle");
    DNNL_TRY(dnnl_memory_set_data_handle(to, scratch), "set handle");
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, r->f32}, {DNNL_ARG_TO, to}};
    DNNL_TRY(dnnl_primitive_execute(r->reorder, st, 2, args), "input conversion");
    return NULL;
}

void otl_dnnl_conversion_release(otl_dnnl_conversion *r) {
    if (r->reorder) dnnl_primitive_destroy(r->reorder);
    if (r->f32) dnnl_memory_destroy(r->f32);
    *r = (otl_dnnl_conversion){0};
}
