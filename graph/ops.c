/* The op registry (ops.def) as tables: names, versions with their arities,
 * and each version's attributes, parsed from a node's AttributeProtos. */
#include "ops.h"

#include <float.h>
#include <stddef.h>
#include <string.h>

#include "dtype.h"

typedef enum {
    ATTR_INT, ATTR_INT_SET, ATTR_INT_NOT, ATTR_FLOAT, ATTR_INTS, ATTR_FLOATS, ATTR_ENUM, ATTR_STRING, ATTR_TENSOR,
    ATTR_ONLY, ATTR_UNUSED
} attr_type;

/* One attribute an op version accepts, and where its value goes. */
typedef struct {
    const char *name;
    attr_type type;
    size_t field;              /* offsetof(otl_attrs, ...) */
    size_t extra;              /* INTS: offset of the count; INT_SET: of the "present" flag */
    int cap;                   /* INTS: most values */
    double value;              /* INT/FLOAT: default; ONLY: the one value supported */
    const char *const *names;  /* ENUM: the strings, stored as their index */
    const char *why;           /* ONLY: the message for any other value */
} attr_spec;

#define OFF(f) offsetof(otl_attrs, f)
#define A_INT(name, f, def) {name, ATTR_INT, OFF(f), 0, 0, def, NULL, NULL},
#define A_INT_SET(name, f, flag) {name, ATTR_INT_SET, OFF(f), OFF(flag), 0, 0, NULL, NULL},
#define A_INT_NOT(name, f, def) {name, ATTR_INT_NOT, OFF(f), 0, 0, def, NULL, NULL},
#define A_FLOAT(name, f, def) {name, ATTR_FLOAT, OFF(f), 0, 0, def, NULL, NULL},
#define A_INTS(name, f, count, cap) {name, ATTR_INTS, OFF(f), OFF(count), cap, 0, NULL, NULL},
#define A_FLOATS(name, f, count, cap) {name, ATTR_FLOATS, OFF(f), OFF(count), cap, 0, NULL, NULL},
#define A_ENUM(name, f, ...) {name, ATTR_ENUM, OFF(f), 0, 0, 0, (const char *const[]){__VA_ARGS__, NULL}, NULL},
#define A_TENSOR(name, f) {name, ATTR_TENSOR, OFF(f), 0, 0, 0, NULL, NULL},
#define A_STRING(name, f) {name, ATTR_STRING, OFF(f), sizeof(((otl_attrs *)0)->f), 0, 0, NULL, NULL},
#define A_ONLY(name, v, why) {name, ATTR_ONLY, 0, 0, 0, v, NULL, why},
#define A_UNUSED(name) {name, ATTR_UNUSED, 0, 0, 0, 0, NULL, NULL},

struct otl_op_version {
    otl_op op;
    int since;
    int min_in, max_in, min_out, max_out;
    const attr_spec *attrs; /* ends with a NULL name */
};

static const char *const op_names[OP_UNSUPPORTED] = {
#define OTL_OP(id, domain, name, shape) [OP_##id] = name,
#define OTL_VERSION(...)
#include "ops.def"
#undef OTL_OP
#undef OTL_VERSION
};

static const char *const op_domains[OP_UNSUPPORTED] = {
#define OTL_OP(id, domain, name, shape) [OP_##id] = domain,
#define OTL_VERSION(...)
#include "ops.def"
#undef OTL_OP
#undef OTL_VERSION
};

static const otl_op_version versions[] = {
#define OTL_OP(id, domain, name, shape)
#define OTL_VERSION(id, since, min_in, max_in, min_out, max_out, attrs) \
    {OP_##id, since, min_in, max_in, min_out, max_out, (const attr_spec[]){attrs{0}}},
#include "ops.def"
#undef OTL_OP
#undef OTL_VERSION
};

const char *otl_op_name(otl_op op) { return op < OP_UNSUPPORTED ? op_names[op] : "unsupported op"; }

bool otl_op_lookup(const char *domain, const char *name, otl_op *op) {
    if (!strcmp(domain, "ai.onnx")) domain = ""; /* the default domain's two spellings */
    for (int i = 0; i < OP_UNSUPPORTED; i++) {
        if (!strcmp(op_domains[i], domain) && !strcmp(op_names[i], name)) {
            *op = (otl_op)i;
            return true;
        }
    }
    return false;
}

onnxtl_status *otl_op_version_for(otl_op op, int opset, const otl_op_version **out) {
    *out = NULL;
    int oldest = 0;
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        const otl_op_version *v = &versions[i];
        if (v->op != op) continue;
        if (!oldest || v->since < oldest) oldest = v->since;
        if (v->since <= opset && (!*out || v->since > (*out)->since)) *out = v;
    }
    return *out ? NULL
                 : otl_error(ONNXTL_ERR_UNSUPPORTED, "%s before opset %d is not supported (the model imports opset %d)",
                             otl_op_name(op), oldest, opset);
}

/* The inputs and outputs a node must name: the first min of them, and
 * every input of a variadic op (Concat, Sum, Max...). */
static onnxtl_status *check_named(const otl_op_version *v, char *const *names, int n, int required, const char *what) {
    for (int k = 0; k < required && k < n; k++)
        if (!names[k] || !names[k][0])
            return otl_error(ONNXTL_ERR_MODEL, "%s-%d's %s %d is required but left empty", otl_op_name(v->op), v->since,
                             what, k);
    return NULL;
}

onnxtl_status *otl_op_check_names(const otl_op_version *v, char *const *inputs, int n_in, char *const *outputs,
                                  int n_out) {
    enum { MOST_NAMED_INPUTS = 16 }; /* beyond this an op is variadic */
    OTL_TRY(check_named(v, inputs, n_in, v->max_in > MOST_NAMED_INPUTS ? n_in : v->min_in, "input"));
    return check_named(v, outputs, n_out, v->min_out, "output");
}

onnxtl_status *otl_op_check_arity(const otl_op_version *v, int n_in, int n_out) {
    if (n_in < v->min_in || n_in > v->max_in)
        return otl_error(ONNXTL_ERR_MODEL, "%s-%d takes %d to %d inputs, this node has %d", otl_op_name(v->op),
                         v->since, v->min_in, v->max_in, n_in);
    if (n_out < v->min_out || n_out > v->max_out)
        return otl_error(ONNXTL_ERR_MODEL, "%s-%d has %d to %d outputs, this node has %d", otl_op_name(v->op),
                         v->since, v->min_out, v->max_out, n_out);
    return NULL;
}

static onnxtl_status *set_ints(const attr_spec *s, const Onnx__AttributeProto *at, otl_attrs *a) {
    if (at->n_ints > (size_t)s->cap)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "attribute '%s' has %zu values, at most %d supported", s->name,
                         at->n_ints, s->cap);
    if (at->n_ints) memcpy((char *)a + s->field, at->ints, at->n_ints * sizeof(int64_t)); /* ints is NULL when empty */
    *(int *)((char *)a + s->extra) = (int)at->n_ints;
    return NULL;
}

static onnxtl_status *set_enum(const attr_spec *s, const Onnx__AttributeProto *at, otl_attrs *a) {
    for (int i = 0; s->names[i]; i++) {
        if (at->s.len == strlen(s->names[i]) && !memcmp(at->s.data, s->names[i], at->s.len)) {
            *(int *)((char *)a + s->field) = i;
            return NULL;
        }
    }
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "attribute %s='%.*s' is not supported (%s%s)", s->name, (int)at->s.len,
                     (const char *)at->s.data, s->names[1] ? "one of " : "only ", s->names[0]);
}

/* A one-element tensor attribute (ConstantOfShape's value), from raw_data
 * or its typed field. */
static onnxtl_status *set_scalar_tensor(const attr_spec *s, const Onnx__AttributeProto *at, otl_attrs *a) {
    const Onnx__TensorProto *t = at->t;
    size_t es = t ? otl_dtype_size(t->data_type) : 0;
    int64_t count = 1;
    for (size_t i = 0; t && i < t->n_dims; i++) count *= t->dims[i];
    if (!t || !es || es > sizeof a->fill.bytes || count != 1)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "attribute '%s' must be a one-element numeric tensor", s->name);
    a->fill.dtype = t->data_type;
    /* Each type has its field; small ones are stored widened, and little-endian
     * puts the value in the low bytes of the wide one. */
    const void *src = NULL;
    uint64_t wide = 0;
    if (t->has_raw_data) src = t->raw_data.len == es ? t->raw_data.data : NULL;
    else if (t->data_type == ONNXTL_FLOAT) src = t->n_float_data == 1 ? t->float_data : NULL;
    else if (t->data_type == ONNXTL_DOUBLE) src = t->n_double_data == 1 ? t->double_data : NULL;
    else if (t->data_type == ONNXTL_INT64) src = t->n_int64_data == 1 ? t->int64_data : NULL;
    else if (t->data_type == ONNXTL_UINT32 || t->data_type == ONNXTL_UINT64)
        src = t->n_uint64_data == 1 ? (wide = t->uint64_data[0], &wide) : NULL;
    else src = t->n_int32_data == 1 ? (wide = (uint64_t)(int64_t)t->int32_data[0], &wide) : NULL;
    if (!src) return otl_error(ONNXTL_ERR_MODEL, "attribute '%s' holds no value of its type", s->name);
    memcpy(a->fill.bytes, src, es);
    return NULL;
}

/* A string kept without its spaces (Einsum's "bij, bjk -> bik"). */
static onnxtl_status *set_string(const attr_spec *s, const Onnx__AttributeProto *at, otl_attrs *a) {
    char *dst = (char *)a + s->field;
    size_t n = 0;
    for (size_t i = 0; i < at->s.len; i++) {
        if (at->s.data[i] == ' ') continue;
        if (n + 1 >= s->extra)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "attribute '%s' is longer than %zu characters", s->name, s->extra - 1);
        dst[n++] = (char)at->s.data[i];
    }
    dst[n] = '\0';
    return NULL;
}

static onnxtl_status *apply(const attr_spec *s, const Onnx__AttributeProto *at, otl_attrs *a) {
    char *field = (char *)a + s->field;
    switch (s->type) {
    case ATTR_INT: *(int64_t *)field = at->i; return NULL;
    case ATTR_INT_SET: *(int64_t *)field = at->i, *(bool *)((char *)a + s->extra) = true; return NULL;
    case ATTR_INT_NOT: *(int64_t *)field = !at->i; return NULL;
    case ATTR_FLOAT: *(float *)field = at->f; return NULL;
    case ATTR_INTS: return set_ints(s, at, a);
    case ATTR_FLOATS:
        if (at->n_floats > (size_t)s->cap)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "attribute '%s' has %zu values, at most %d supported", s->name,
                             at->n_floats, s->cap);
        if (at->n_floats) memcpy(field, at->floats, at->n_floats * sizeof(float));
        *(int *)((char *)a + s->extra) = (int)at->n_floats;
        return NULL;
    case ATTR_ENUM: return set_enum(s, at, a);
    case ATTR_TENSOR: return set_scalar_tensor(s, at, a);
    case ATTR_STRING: return set_string(s, at, a);
    case ATTR_ONLY: return at->i == (int64_t)s->value ? NULL : otl_error(ONNXTL_ERR_UNSUPPORTED, "%s", s->why);
    case ATTR_UNUSED: return NULL;
    }
    return NULL;
}

static void set_defaults(const otl_op_version *v, otl_attrs *a) {
    memset(a, 0, sizeof *a);
    a->n_axes = a->n_perm = a->n_split = -1; /* absent */
    for (const attr_spec *s = v->attrs; s->name; s++) {
        if (s->type == ATTR_INT) *(int64_t *)((char *)a + s->field) = (int64_t)s->value;
        else if (s->type == ATTR_INT_NOT) *(int64_t *)((char *)a + s->field) = !(int64_t)s->value;
        else if (s->type == ATTR_FLOAT) *(float *)((char *)a + s->field) = (float)s->value;
    }
}

onnxtl_status *otl_attrs_parse(const otl_op_version *v, Onnx__AttributeProto *const *attrs, size_t n,
                               otl_attrs *out) {
    set_defaults(v, out);
    for (size_t i = 0; i < n; i++) {
        const char *name = attrs[i]->name ? attrs[i]->name : "";
        for (const attr_spec *s = v->attrs; s->name; s++)
            if (!strcmp(s->name, name)) OTL_TRY(apply(s, attrs[i], out));
    }
    return NULL;
}
