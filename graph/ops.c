#include "ops.h"

#include <float.h>
#include <string.h>

static const char *const op_names[OP_COUNT] = {
#define OTL_OP(id, name) [OP_##id] = name,
#include "ops.def"
#undef OTL_OP
};

const char *otl_op_name(otl_op op) { return op < OP_COUNT ? op_names[op] : "?"; }

bool otl_op_lookup(const char *name, otl_op *op) {
    for (int i = 0; i < OP_COUNT; i++) {
        if (!strcmp(op_names[i], name)) {
            *op = (otl_op)i;
            return true;
        }
    }
    return false;
}

typedef struct {
    int min_in, max_in, min_out, max_out;
} arity;

static arity op_arity(otl_op op, int opset) {
    switch (op) {
    case OP_CONV: return (arity){2, 3, 1, 1};
    case OP_BATCHNORM: return (arity){5, 5, 1, 5};
    case OP_CLIP: return (arity){1, opset < 11 ? 1 : 3, 1, 1};
    case OP_MAXPOOL: return (arity){1, 1, 1, 2};
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MATMUL: case OP_GATHER:
        return (arity){2, 2, 1, 1};
    case OP_SUM: case OP_CONCAT: return (arity){1, 1 << 20, 1, 1};
    case OP_GEMM: return (arity){2, 3, 1, 1};
    case OP_REDUCEMEAN: return (arity){1, opset < 18 ? 1 : 2, 1, 1};
    case OP_RESHAPE: return (arity){2, 2, 1, 1};
    case OP_SQUEEZE: return (arity){1, opset < 13 ? 1 : 2, 1, 1};
    case OP_UNSQUEEZE: return (arity){opset < 13 ? 1 : 2, opset < 13 ? 1 : 2, 1, 1};
    case OP_DROPOUT: return (arity){1, opset < 12 ? 1 : 3, 1, 2};
    case OP_PAD: return (arity){1, opset < 11 ? 1 : 4, 1, 1};
    case OP_CONSTANT: return (arity){0, 0, 1, 1};
    default: return (arity){1, 1, 1, 1};
    }
}

onnxtl_status *otl_op_check_arity(otl_op op, int opset, int n_in, int n_out) {
    arity a = op_arity(op, opset);
    if (n_in < a.min_in || n_in > a.max_in)
        return otl_error(ONNXTL_ERR_MODEL, "%s takes %d to %d inputs, this node has %d",
                         otl_op_name(op), a.min_in, a.max_in, n_in);
    if (n_out < a.min_out || n_out > a.max_out)
        return otl_error(ONNXTL_ERR_MODEL, "%s has %d to %d outputs, this node has %d",
                         otl_op_name(op), a.min_out, a.max_out, n_out);
    return NULL;
}

static void set_defaults(otl_op op, int opset, otl_attrs *a) {
    memset(a, 0, sizeof *a);
    a->group = 1;
    a->n_axes = -1;
    a->n_perm = -1;
    a->keepdims = 1;
    a->alpha = 1.0f;
    a->beta = 1.0f;
    a->epsilon = 1e-5f;
    a->clip_min = -FLT_MAX;
    a->clip_max = FLT_MAX;
    switch (op) {
    case OP_SOFTMAX: case OP_LOGSOFTMAX: a->axis = opset < 13 ? 1 : -1; break;
    case OP_FLATTEN: a->axis = 1; break;
    default: a->axis = 0; break;
    }
}

static onnxtl_status *copy_ints(const Onnx__AttributeProto *at, int64_t *dst, int max, int *n) {
    if (at->n_ints > (size_t)max)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "attribute '%s' has %zu values, at most %d supported",
                         at->name, at->n_ints, max);
    memcpy(dst, at->ints, at->n_ints * sizeof(int64_t));
    *n = (int)at->n_ints;
    return NULL;
}

static onnxtl_status *parse_auto_pad(const Onnx__AttributeProto *at, int *out) {
    static const char *const names[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    for (int i = 0; i < 4; i++) {
        if (at->s.len == strlen(names[i]) && !memcmp(at->s.data, names[i], at->s.len)) {
            *out = i;
            return NULL;
        }
    }
    return otl_error(ONNXTL_ERR_MODEL, "unknown auto_pad value '%.*s'", (int)at->s.len,
                     (const char *)at->s.data);
}

static onnxtl_status *parse_pad_mode(const Onnx__AttributeProto *at) {
    if (at->s.len == 8 && !memcmp(at->s.data, "constant", 8)) return NULL;
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "Pad mode '%.*s' is not supported (only 'constant')",
                     (int)at->s.len, (const char *)at->s.data);
}

/* Applies one attribute; names that do not change inference results are ignored. */
static onnxtl_status *apply_attr(otl_op op, int opset, const Onnx__AttributeProto *at,
                                 otl_attrs *a) {
    const char *n = at->name ? at->name : "";
    bool pad_op = op == OP_PAD;
    if (!strcmp(n, "kernel_shape")) return copy_ints(at, a->kernel, OTL_MAX_SPATIAL, &a->n_kernel);
    if (!strcmp(n, "strides")) return copy_ints(at, a->strides, OTL_MAX_SPATIAL, &a->n_strides);
    if (!strcmp(n, "dilations")) return copy_ints(at, a->dilations, OTL_MAX_SPATIAL, &a->n_dilations);
    if (!strcmp(n, "pads"))
        return pad_op ? copy_ints(at, a->pad_amounts, 2 * ONNXTL_MAX_RANK, &a->n_pad_amounts)
                      : copy_ints(at, a->pads, 2 * OTL_MAX_SPATIAL, &a->n_pads);
    if (!strcmp(n, "auto_pad")) return parse_auto_pad(at, &a->auto_pad);
    if (!strcmp(n, "mode") && pad_op) return parse_pad_mode(at);
    if (!strcmp(n, "axes")) return copy_ints(at, a->axes, ONNXTL_MAX_RANK, &a->n_axes);
    if (!strcmp(n, "perm")) return copy_ints(at, a->perm, ONNXTL_MAX_RANK, &a->n_perm);
    if (!strcmp(n, "group")) a->group = at->i;
    else if (!strcmp(n, "ceil_mode")) a->ceil_mode = (int)at->i;
    else if (!strcmp(n, "count_include_pad")) a->count_include_pad = (int)at->i;
    else if (!strcmp(n, "axis")) a->axis = at->i;
    else if (!strcmp(n, "keepdims")) a->keepdims = (int)at->i;
    else if (!strcmp(n, "noop_with_empty_axes")) a->noop_with_empty_axes = (int)at->i;
    else if (!strcmp(n, "alpha")) a->alpha = at->f;
    else if (!strcmp(n, "beta")) a->beta = at->f;
    else if (!strcmp(n, "epsilon")) a->epsilon = at->f;
    else if (!strcmp(n, "transA")) a->trans_a = (int)at->i;
    else if (!strcmp(n, "transB")) a->trans_b = (int)at->i;
    else if (!strcmp(n, "min")) a->clip_min = at->f;
    else if (!strcmp(n, "max")) a->clip_max = at->f;
    else if (!strcmp(n, "value") && pad_op) a->pad_value = at->f;
    else if (!strcmp(n, "to")) a->to = (int)at->i;
    else if (!strcmp(n, "allowzero")) a->allowzero = (int)at->i;
    else if (!strcmp(n, "start")) a->shape_start = at->i;
    else if (!strcmp(n, "end")) { a->shape_end = at->i; a->has_shape_end = true; }
    else if (!strcmp(n, "training_mode")) a->training_mode = (int)at->i;
    else if (!strcmp(n, "is_test") && op == OP_BATCHNORM) a->training_mode = at->i == 0;
    else if (!strcmp(n, "storage_order") && at->i != 0 && op == OP_MAXPOOL)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "MaxPool storage_order=1 is not supported");
    else if (!strcmp(n, "spatial") && at->i == 0 && op == OP_BATCHNORM)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "BatchNormalization spatial=0 is not supported");
    return NULL;
}

onnxtl_status *otl_attrs_parse(otl_op op, int opset, Onnx__AttributeProto *const *attrs, size_t n,
                               otl_attrs *out) {
    set_defaults(op, opset, out);
    for (size_t i = 0; i < n; i++) OTL_TRY(apply_attr(op, opset, attrs[i], out));
    return NULL;
}
