/* ONNX ModelProto -> otl_graph. */
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "dtype.h"
#include "ir.h"
#include "ops.h"
#include "proto.h"

#define WEIGHT_ALIGN 64

/* What onnxtl does not support in one part of a model (an op, a domain, an
 * element type) is kept as *why rather than raised: it is an error only
 * where a plan needs that part.  Any other status is returned as it is. */
static onnxtl_status *defer_unsupported(onnxtl_status *st, char **why) {
    if (!st || onnxtl_status_code(st) != ONNXTL_ERR_UNSUPPORTED) return st;
    if (!*why) *why = strdup(onnxtl_status_message(st)); /* the first reason found is the one kept */
    onnxtl_status_release(st);
    return *why ? NULL : otl_nomem();
}

static int default_opset(const Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain;
        if (!d || !*d || !strcmp(d, "ai.onnx")) return (int)m->opset_import[i]->version;
    }
    return -1;
}

static onnxtl_status *copy_metadata(otl_graph *g, const Onnx__ModelProto *m) {
    g->meta_keys = calloc(m->n_metadata_props + 1, sizeof *g->meta_keys);
    g->meta_values = calloc(m->n_metadata_props + 1, sizeof *g->meta_values);
    if (!g->meta_keys || !g->meta_values) return otl_nomem();
    for (size_t i = 0; i < m->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *e = m->metadata_props[i];
        g->meta_keys[g->n_meta] = strdup(e->key ? e->key : "");
        g->meta_values[g->n_meta] = strdup(e->value ? e->value : "");
        g->n_meta++;
        if (!g->meta_keys[g->n_meta - 1] || !g->meta_values[g->n_meta - 1]) return otl_nomem();
    }
    return NULL;
}

static onnxtl_status *init_header(otl_graph *g, const char *path, const Onnx__ModelProto *m) {
    g->path = strdup(path);
    g->producer_name = strdup(m->producer_name ? m->producer_name : "");
    g->producer_version = strdup(m->producer_version ? m->producer_version : "");
    if (!g->path || !g->producer_name || !g->producer_version) return otl_nomem();
    OTL_TRY(copy_metadata(g, m));
    g->ir_version = m->ir_version;
    g->opset = default_opset(m);
    if (g->opset < 0)
        return otl_error(ONNXTL_ERR_MODEL, "the model imports no default-domain (ai.onnx) opset");
    if (g->opset < 6)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "opset %d is too old (6 or newer supported)",
                         g->opset);
    return NULL;
}

static void set_value_shape(otl_value *v, const otl_proto_tensor_info *info) {
    v->dtype = info->dtype;
    v->rank = info->rank;
    memcpy(v->dims, info->dims, sizeof(int64_t) * (size_t)info->rank);
}

/* Where a tensor's data lies in a file the graph keeps mapped, stored as
 * onnxtl holds it; NULL for a model in memory, whose bytes are its caller's,
 * and for bytes the parser copied (a file it read without the skeleton).
 * The mapping is private and writable, so the graph may own the bytes. */
static onnxtl_status *locate_data(otl_graph *g, const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                  void **held) {
    *held = NULL;
    if (!g->files.model.bytes) return NULL;
    const void *at;
    OTL_TRY(otl_proto_tensor_stored_as_held(t, info, &g->files, &at));
    if (at && otl_model_files_hold(&g->files, at, info->nbytes)) *held = (void *)at;
    return NULL;
}

/* Used where it lies: a C type needs its natural alignment. */
static bool usable_in_place(const void *held, const otl_proto_tensor_info *info) {
    return held && (uintptr_t)held % otl_dtype_size(info->dtype) == 0;
}

/* Copies a tensor's data to dst, then gives back the mapped pages it came
 * from: nothing reads them again. */
static onnxtl_status *copy_data(otl_graph *g, const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                const void *held, void *dst) {
    OTL_TRY(otl_proto_tensor_read(t, info, &g->files, dst));
    if (held) otl_mapped_forget(held, info->nbytes);
    return NULL;
}

/* Initializers are used where the file holds them when they can be; the
 * others go into one allocation, each at an aligned offset. */
static onnxtl_status *load_initializers(otl_graph *g, const Onnx__GraphProto *gp) {
    size_t n = gp->n_initializer, total = 0;
    otl_proto_tensor_info *infos = calloc(n ? n : 1, sizeof *infos);
    size_t *offsets = calloc(n ? n : 1, sizeof *offsets);
    void **held = calloc(n ? n : 1, sizeof *held);
    char **unusable = calloc(n ? n : 1, sizeof *unusable);
    onnxtl_status *st = NULL;
    if (!infos || !offsets || !held || !unusable) {
        st = otl_nomem();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t->name || !*t->name) {
            st = otl_error(ONNXTL_ERR_MODEL, "initializer %zu has no name", i);
            goto done;
        }
        OTL_TRY_GOTO(st, defer_unsupported(otl_proto_tensor_describe(t, &infos[i]), &unusable[i]), done);
        if (unusable[i]) continue; /* a value onnxtl cannot hold, kept without data */
        OTL_TRY_GOTO(st, otl_proto_tensor_check_stored(t, &infos[i], &g->files), done);
        OTL_TRY_GOTO(st, locate_data(g, t, &infos[i], &held[i]), done);
        if (usable_in_place(held[i], &infos[i])) continue;
        size_t padded = (infos[i].nbytes + WEIGHT_ALIGN - 1) & ~(size_t)(WEIGHT_ALIGN - 1);
        offsets[i] = total;
        if (padded < infos[i].nbytes || !otl_add_size(total, padded, &total)) {
            st = otl_error(ONNXTL_ERR_MODEL, "initializers are too large in total");
            goto done;
        }
    }
    g->weights_bytes = total;
    /* Never NULL, even for empty tensors only: a constant is a value whose data is set. */
    if (!(g->weights = aligned_alloc(WEIGHT_ALIGN, total ? total : WEIGHT_ALIGN))) {
        st = otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes for the weights", total);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        int idx;
        OTL_TRY_GOTO(st, otl_graph_add_value(g, t->name, &idx), done);
        otl_value *v = &g->values[idx];
        if (unusable[i]) {
            v->unusable = unusable[i];
            unusable[i] = NULL;
            continue;
        }
        set_value_shape(v, &infos[i]);
        v->initializer = true;
        if (usable_in_place(held[i], &infos[i])) {
            v->data = held[i];
            continue;
        }
        v->data = (char *)g->weights + offsets[i];
        OTL_TRY_GOTO(st, copy_data(g, t, &infos[i], held[i], v->data), done);
    }
done:
    for (size_t i = 0; unusable && i < n; i++) free(unusable[i]);
    free(unusable);
    free(held);
    free(infos);
    free(offsets);
    return st;
}

static onnxtl_status *declare_type(otl_value *v, const Onnx__TypeProto *tp) {
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "'%s' is not a tensor (sequences, maps and "
                                                 "optionals are not supported)", v->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    v->dtype = tt->has_elem_type ? tt->elem_type : 0;
    if (!tt->shape) return NULL; /* rank unknown until inputs are given */
    if (tt->shape->n_dim > ONNXTL_MAX_RANK)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "'%s' has rank %zu (at most %d supported)",
                         v->name, tt->shape->n_dim, ONNXTL_MAX_RANK);
    v->rank = (int)tt->shape->n_dim;
    for (int i = 0; i < v->rank; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (fixed && d->dim_value < 0)
            return otl_error(ONNXTL_ERR_MODEL, "input '%s' has negative dimension %lld", v->name,
                             (long long)d->dim_value);
        v->dims[i] = fixed ? d->dim_value : -1;
    }
    return NULL;
}

static onnxtl_status *load_inputs(otl_graph *g, const Onnx__GraphProto *gp) {
    if (!(g->inputs = calloc(gp->n_input + 1, sizeof *g->inputs))) return otl_nomem();
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi->name || !*vi->name) return otl_error(ONNXTL_ERR_MODEL, "graph input %zu has no name", i);
        if (otl_graph_find(g, vi->name) >= 0) continue; /* an initializer listed as input (IR < 4) */
        int idx;
        OTL_TRY(otl_graph_add_value(g, vi->name, &idx));
        OTL_TRY(declare_type(&g->values[idx], vi->type));
        g->inputs[g->n_inputs++] = idx;
    }
    return NULL;
}

static onnxtl_status *constant_from_floats(otl_value *v, const float *f, size_t n, int rank) {
    v->dtype = ONNXTL_FLOAT;
    v->rank = rank;
    v->dims[0] = (int64_t)n;
    if (!(v->data = malloc(n ? n * sizeof(float) : 1))) return otl_nomem();
    v->data_owned = true;
    memcpy(v->data, f, n * sizeof(float));
    return NULL;
}

static onnxtl_status *constant_from_ints(otl_value *v, const int64_t *x, size_t n, int rank) {
    v->dtype = ONNXTL_INT64;
    v->rank = rank;
    v->dims[0] = (int64_t)n;
    if (!(v->data = malloc(n ? n * sizeof(int64_t) : 1))) return otl_nomem();
    v->data_owned = true;
    memcpy(v->data, x, n * sizeof(int64_t));
    return NULL;
}

static onnxtl_status *constant_from_tensor(otl_graph *g, otl_value *v, const Onnx__TensorProto *t) {
    otl_proto_tensor_info info;
    void *held;
    OTL_TRY(otl_proto_tensor_describe(t, &info));
    OTL_TRY(otl_proto_tensor_check_stored(t, &info, &g->files));
    OTL_TRY(locate_data(g, t, &info, &held));
    set_value_shape(v, &info);
    if (usable_in_place(held, &info)) return v->data = held, NULL;
    if (!(v->data = malloc(info.nbytes ? info.nbytes : 1))) return otl_nomem();
    v->data_owned = true;
    return copy_data(g, t, &info, held, v->data);
}

/* A Constant node becomes a constant value; no node is kept for it. */
static onnxtl_status *load_constant(otl_graph *g, const Onnx__NodeProto *np) {
    if (np->n_output != 1 || np->n_attribute != 1)
        return otl_error(ONNXTL_ERR_MODEL, "Constant needs one output and one value attribute");
    int idx;
    OTL_TRY(otl_graph_add_value(g, np->output[0], &idx));
    otl_value *v = &g->values[idx];
    const Onnx__AttributeProto *at = np->attribute[0];
    const char *n = at->name ? at->name : "";
    if (!strcmp(n, "value") && at->t) return defer_unsupported(constant_from_tensor(g, v, at->t), &v->unusable);
    if (!strcmp(n, "value_float")) return constant_from_floats(v, &at->f, 1, 0);
    if (!strcmp(n, "value_floats")) return constant_from_floats(v, at->floats, at->n_floats, 1);
    if (!strcmp(n, "value_int")) return constant_from_ints(v, &at->i, 1, 0);
    if (!strcmp(n, "value_ints")) return constant_from_ints(v, at->ints, at->n_ints, 1);
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "Constant attribute '%s' is not supported", n);
}

static onnxtl_status *node_op(const otl_graph *g, const Onnx__NodeProto *np, otl_op *op) {
    const char *domain = np->domain ? np->domain : "";
    const char *type = np->op_type ? np->op_type : "";
    if (!otl_op_lookup(domain, type, op))
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "unsupported op '%s%s%s' (opset %d)", domain,
                         *domain ? "." : "", type, g->opset);
    return NULL;
}

/* The op, its version for the model's opset, arity and attributes. */
static onnxtl_status *load_op(const otl_graph *g, const Onnx__NodeProto *np, otl_node *nd) {
    const otl_op_version *version;
    OTL_TRY(node_op(g, np, &nd->op));
    OTL_TRY(otl_op_version_for(nd->op, g->opset, &version));
    OTL_TRY(otl_op_check_arity(version, (int)np->n_input, (int)np->n_output));
    OTL_TRY(otl_op_check_names(version, np->input, (int)np->n_input, np->output, (int)np->n_output));
    return otl_attrs_parse(version, np->attribute, np->n_attribute, &nd->attrs);
}

static onnxtl_status *load_node(otl_graph *g, const Onnx__NodeProto *np, otl_node *nd) {
    nd->opset = g->opset;
    OTL_TRY(defer_unsupported(load_op(g, np, nd), &nd->unsupported));
    if (nd->unsupported) nd->op = OP_UNSUPPORTED;
    nd->n_in = (int)np->n_input;
    nd->n_out = (int)np->n_output;
    nd->in = calloc((size_t)nd->n_in + 1, sizeof(int));
    nd->out = calloc((size_t)nd->n_out + 1, sizeof(int));
    if (!nd->in || !nd->out) return otl_nomem();
    for (int k = 0; k < nd->n_out; k++) {
        nd->out[k] = -1;
        if (!*np->output[k]) continue; /* omitted optional output */
        OTL_TRY(otl_graph_add_value(g, np->output[k], &nd->out[k]));
    }
    return NULL;
}

static onnxtl_status *resolve_inputs(otl_graph *g, const Onnx__NodeProto *np, otl_node *nd) {
    for (int k = 0; k < nd->n_in; k++) {
        nd->in[k] = -1;
        if (!*np->input[k]) continue;
        nd->in[k] = otl_graph_find(g, np->input[k]);
        if (nd->in[k] < 0)
            return otl_error(ONNXTL_ERR_MODEL,
                             "input '%s' is not defined by any node, initializer or graph input "
                             "(missing initializer?)", np->input[k]);
    }
    return NULL;
}

static onnxtl_status *node_error(onnxtl_status *st, const Onnx__NodeProto *np, size_t i) {
    return otl_error_wrap(st, "node '%s' (%s, #%zu)", np->name && *np->name ? np->name : "",
                          np->op_type ? np->op_type : "?", i);
}

/* Orders nodes so each comes after the producers of its inputs (Kahn). */
static onnxtl_status *sort_nodes(otl_graph *g) {
    int n = g->n_nodes;
    int *pending = calloc((size_t)n + 1, sizeof *pending), *order = calloc((size_t)n + 1, sizeof *order);
    otl_node *sorted = calloc((size_t)n + 1, sizeof *sorted);
    onnxtl_status *st = NULL;
    if (!pending || !order || !sorted) {
        st = otl_nomem();
        goto done;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (g->nodes[i].out[k] >= 0) g->values[g->nodes[i].out[k]].producer = i;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            pending[i] += g->nodes[i].in[k] >= 0 && g->values[g->nodes[i].in[k]].producer >= 0;
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (!pending[i]) order[tail++] = i;
    while (head < tail) {
        const otl_node *nd = &g->nodes[order[head++]];
        for (int i = 0; i < n; i++) /* quadratic, but only over edges from nd */
            for (int k = 0; k < g->nodes[i].n_in; k++)
                for (int o = 0; o < nd->n_out; o++)
                    if (nd->out[o] >= 0 && g->nodes[i].in[k] == nd->out[o] && !--pending[i])
                        order[tail++] = i;
    }
    if (tail < n) {
        for (int i = 0; i < n; i++) {
            if (pending[i]) {
                st = otl_error(ONNXTL_ERR_MODEL, "the graph has a cycle through node '%s' (%s)",
                               g->nodes[i].name, otl_op_name(g->nodes[i].op));
                goto done;
            }
        }
    }
    for (int i = 0; i < n; i++) sorted[i] = g->nodes[order[i]];
    free(g->nodes);
    g->nodes = sorted;
    sorted = NULL;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (g->nodes[i].out[k] >= 0) g->values[g->nodes[i].out[k]].producer = i;
done:
    free(pending);
    free(order);
    free(sorted);
    return st;
}

static onnxtl_status *load_nodes(otl_graph *g, const Onnx__GraphProto *gp) {
    if (!(g->nodes = calloc(gp->n_node + 1, sizeof *g->nodes))) return otl_nomem();
    /* Constants first so that later nodes can see their shapes; then every
     * node's outputs, so inputs resolve whatever the file's node order. */
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        if (np->op_type && !strcmp(np->op_type, "Constant") && (!np->domain || !*np->domain))
            OTL_TRY(node_error(load_constant(g, np), np, i));
    }
    int *node_of = calloc(gp->n_node + 1, sizeof *node_of);
    if (!node_of) return otl_nomem();
    onnxtl_status *st = NULL;
    for (size_t i = 0; i < gp->n_node && !st; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        node_of[i] = -1;
        if (np->op_type && !strcmp(np->op_type, "Constant") && (!np->domain || !*np->domain)) continue;
        otl_node *nd = &g->nodes[g->n_nodes];
        nd->name = strdup(np->name ? np->name : "");
        if (!nd->name) st = otl_nomem();
        else st = node_error(load_node(g, np, nd), np, i);
        node_of[i] = g->n_nodes++;
    }
    for (size_t i = 0; i < gp->n_node && !st; i++)
        if (node_of[i] >= 0) st = node_error(resolve_inputs(g, gp->node[i], &g->nodes[node_of[i]]), gp->node[i], i);
    free(node_of);
    return st ? st : sort_nodes(g);
}

static onnxtl_status *load_outputs(otl_graph *g, const Onnx__GraphProto *gp) {
    if (!gp->n_output) return otl_error(ONNXTL_ERR_MODEL, "the graph has no outputs");
    if (!(g->outputs = calloc(gp->n_output, sizeof *g->outputs))) return otl_nomem();
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = gp->output[i]->name ? gp->output[i]->name : "";
        int idx = otl_graph_find(g, name);
        if (idx < 0)
            return otl_error(ONNXTL_ERR_MODEL, "graph output '%s' is not produced by any node", name);
        otl_value *v = &g->values[idx];
        if (!v->data && gp->output[i]->type) /* as declared, for callers */
            OTL_TRY(defer_unsupported(declare_type(v, gp->output[i]->type), &v->unusable));
        g->outputs[g->n_outputs++] = idx;
    }
    return NULL;
}

static onnxtl_status *build_graph(otl_graph *g, const char *path, const Onnx__ModelProto *m, bool as_written) {
    OTL_TRY(init_header(g, path, m));
    OTL_TRY(load_initializers(g, m->graph));
    OTL_TRY(load_inputs(g, m->graph));
    OTL_TRY(load_nodes(g, m->graph));
    OTL_TRY(load_outputs(g, m->graph));
    OTL_TRY(otl_pass_remove_identity(g, !as_written));
    if (as_written) return NULL;
    OTL_TRY(otl_pass_fold_batchnorm(g));
    OTL_TRY(otl_pass_fuse_linear_bias(g));
    OTL_TRY(otl_pass_fuse_relu(g));
    OTL_TRY(otl_pass_fuse_gelu(g));
    OTL_TRY(otl_pass_fuse_swish(g));
    OTL_TRY(otl_pass_fuse_activation(g));
    return otl_pass_fuse_residual(g);
}

/* The graph of a parsed model, which is released; g is freed on failure. */
static onnxtl_status *graph_of(otl_graph *g, otl_proto_model *pm, const char *path, bool as_written, otl_graph **out) {
    onnxtl_status *st = build_graph(g, path, pm->proto, as_written);
    otl_proto_model_release(pm);
    if (st) {
        otl_graph_free(g);
        return otl_error_wrap(st, "%s", path);
    }
    *out = g;
    return NULL;
}

/* The file stays mapped for the graph's lifetime: weights are used in it. */
static onnxtl_status *load_file(const char *path, bool as_written, otl_graph **out) {
    otl_graph *g = calloc(1, sizeof *g);
    if (!g) return otl_nomem();
    otl_proto_model pm;
    onnxtl_status *st = otl_model_files_open(&g->files, path);
    if (!st) st = otl_proto_parse_model(g->files.model.bytes, g->files.model.size, path, &pm);
    if (st) {
        otl_graph_free(g);
        return st;
    }
    return graph_of(g, &pm, path, as_written, out);
}

onnxtl_status *otl_graph_load(const char *path, otl_graph **out) { return load_file(path, false, out); }

onnxtl_status *otl_graph_load_as_written(const char *path, otl_graph **out) { return load_file(path, true, out); }

/* The caller's bytes are its own once this returns: weights are copied. */
onnxtl_status *otl_graph_load_memory(const void *data, size_t size, const char *name, otl_graph **out) {
    otl_graph *g = calloc(1, sizeof *g);
    if (!g) return otl_nomem();
    otl_proto_model pm;
    onnxtl_status *st = otl_proto_parse_model(data, size, name, &pm);
    if (st) {
        otl_graph_free(g);
        return st;
    }
    return graph_of(g, &pm, name, false, out);
}
