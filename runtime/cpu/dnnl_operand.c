#include "dnnl_operand.h"

#include "dnnl_check.h"
#include "dnnl_reorder.h"

onnxtl_status *otl_dnnl_operand_init(otl_dnnl_operand *o, dnnl_engine_t eng, const dnnl_memory_desc_t *plain,
                                     dnnl_primitive_desc_t pd, dnnl_query_t query, otl_operand_role role,
                                     size_t *bytes) {
    const dnnl_memory_desc_t *inner = dnnl_primitive_desc_query_md(pd, query, 0);
    o->role = role;
    DNNL_TRY(dnnl_memory_create(&o->plain, plain, eng, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&o->inner, inner, eng, DNNL_MEMORY_NONE), "memory");
    if (role != OTL_OPERAND_ADDED && dnnl_memory_desc_equal(plain, inner)) return NULL;
    o->at = *bytes;
    *bytes += otl_dnnl_round_up64(dnnl_memory_desc_get_size(inner));
    const otl_dnnl_scales none = {0};
    if (role == OTL_OPERAND_IN)
        DNNL_TRY(otl_dnnl_reorder_create(eng, plain, inner, none, false, &o->reorder), "reorder");
    else
        DNNL_TRY(otl_dnnl_reorder_create(eng, inner, plain, none, role == OTL_OPERAND_ADDED, &o->reorder), "reorder");
    return NULL;
}

onnxtl_status *otl_dnnl_operand_bind(const otl_dnnl_operand *o, dnnl_stream_t st, const void *data, char *scratch) {
    DNNL_TRY(dnnl_memory_set_data_handle(o->plain, (void *)data), "set handle");
    DNNL_TRY(dnnl_memory_set_data_handle(o->inner, o->reorder ? scratch + o->at : (void *)data), "set handle");
    if (o->reorder && o->role == OTL_OPERAND_IN) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, o->plain}, {DNNL_ARG_TO, o->inner}};
        DNNL_TRY(dnnl_primitive_execute(o->reorder, st, 2, args), "reorder");
    }
    return NULL;
}

onnxtl_status *otl_dnnl_operand_finish(const otl_dnnl_operand *o, dnnl_stream_t st) {
    if (!o->reorder || o->role == OTL_OPERAND_IN) return NULL;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, o->inner}, {DNNL_ARG_TO, o->plain}};
    DNNL_TRY(dnnl_primitive_execute(o->reorder, st, 2, args), "reorder");
    return NULL;
}

void otl_dnnl_operand_release(otl_dnnl_operand *o) {
    if (o->reorder) dnnl_primitive_destroy(o->reorder);
    if (o->plain) dnnl_memory_destroy(o->plain);
    if (o->inner) dnnl_memory_destroy(o->inner);
}
