/* The op registry (ops.def): ONNX names, versions, arities and attributes. */
#ifndef OTL_OPS_H
#define OTL_OPS_H

#include "ir.h"
#include "onnx.pb-c.h"

/* One ONNX version of an op: from which opset, its arity and attributes. */
typedef struct otl_op_version otl_op_version;

/* Finds an op by domain ("" or "ai.onnx" for the default) and ONNX name;
 * false if onnxtl does not implement it. */
bool otl_op_lookup(const char *domain, const char *name, otl_op *op);

/* The version of op that a model importing opset uses. */
onnxtl_status *otl_op_version_for(otl_op op, int opset, const otl_op_version **v);

/* Checks a node's input and output counts against its op version. */
onnxtl_status *otl_op_check_arity(const otl_op_version *v, int n_in, int n_out);
/* Whether the node names every input and output it must (omitted optional ones are empty names). */
onnxtl_status *otl_op_check_names(const otl_op_version *v, char *const *inputs, int n_in, char *const *outputs,
                                  int n_out);

/* Fills attrs with the version's defaults, then with the node's attributes
 * that the version lists. */
onnxtl_status *otl_attrs_parse(const otl_op_version *v, Onnx__AttributeProto *const *attrs, size_t n,
                               otl_attrs *out);

#endif
