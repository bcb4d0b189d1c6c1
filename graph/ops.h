/* The op table: ONNX names, arities and attribute parsing. */
#ifndef OTL_OPS_H
#define OTL_OPS_H

#include "ir.h"
#include "onnx.pb-c.h"

/* Finds an op by ONNX name in the default domain; false if unsupported. */
bool otl_op_lookup(const char *name, otl_op *op);

/* Checks input/output counts for the op at the given opset. */
onnxtl_status *otl_op_check_arity(otl_op op, int opset, int n_in, int n_out);

/* Fills attrs with the op's defaults, then with the node's attributes. */
onnxtl_status *otl_attrs_parse(otl_op op, int opset, Onnx__AttributeProto *const *attrs, size_t n,
                               otl_attrs *out);

#endif
