/* How the trainer's oneDNN primitives meet the tape: each operand is a tape
 * buffer in ONNX order (plain) and the primitive's layout of it (inner), the
 * two bridged by a reorder through the step's scratch where they differ. */
#ifndef OTL_DNNL_OPERAND_H
#define OTL_DNNL_OPERAND_H

#include <oneapi/dnnl/dnnl.h>

#include "status.h"

/* Read from the tape's buffer, written into it, or added into it (a
 * gradient, which other readers of the input also add to). */
typedef enum { OTL_OPERAND_IN, OTL_OPERAND_OUT, OTL_OPERAND_ADDED } otl_operand_role;

typedef struct {
    dnnl_memory_t plain, inner;
    dnnl_primitive_t reorder; /* plain to inner for an input, inner to plain otherwise; NULL: inner is plain */
    otl_operand_role role;
    size_t at; /* inner's offset in the scratch */
} otl_dnnl_operand;

static inline size_t otl_dnnl_round_up64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* An operand whose inner layout is the primitive's choice (what pd says of
 * query), placed at *bytes in the scratch where it needs a place there: where
 * the layouts differ, and always where it is added (primitives overwrite). */
onnxtl_status *otl_dnnl_operand_init(otl_dnnl_operand *o, dnnl_engine_t eng, const dnnl_memory_desc_t *plain,
                                     dnnl_primitive_desc_t pd, dnnl_query_t query, otl_operand_role role,
                                     size_t *bytes);
/* Points the operand at the tape's buffer and its scratch place, and brings
 * an input into its inner layout. */
onnxtl_status *otl_dnnl_operand_bind(const otl_dnnl_operand *o, dnnl_stream_t st, const void *data, char *scratch);
/* After the primitive: an output brought back into the tape's layout (or added into it). */
onnxtl_status *otl_dnnl_operand_finish(const otl_dnnl_operand *o, dnnl_stream_t st);
void otl_dnnl_operand_release(otl_dnnl_operand *o);

#endif
