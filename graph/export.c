#include "export.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "proto.h"

/* protobuf-c frees unpacked messages with free(), so everything added here is
 * malloc'ed and owned by the message it is attached to. */

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/* Appends item to a protobuf-c repeated field (pointer array + count). */
static bool push(void ***items, size_t *n, void *item) {
    if (!item) return false;
    void **p = realloc(*items, sizeof *p * (*n + 1));
    if (!p) return false;
    p[(*n)++] = item;
    *items = p;
    return true;
}
#define PUSH(arr, n, item) push((void ***)&(arr), &(n), (item))

static Onnx__AttributeProto *attr_new(const char *name, Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = malloc(sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = dup_str(name);
    a->has_type = 1;
    a->type = type;
    return a->name ? a : (free(a), NULL);
}

static Onnx__AttributeProto *attr_int(const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr_new(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(const char *name, float v) {
    Onnx__AttributeProto *a = attr_new(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
    return a;
}

static Onnx__NodeProto *node(const char *op, const char *name, const char *in0, const char *in1, const char *in2,
                             const char *out) {
    Onnx__NodeProto *n = malloc(sizeof *n);
    if (!n) return NULL;
    onnx__node_proto__init(n);
    n->op_type = dup_str(op);
    n->name = dup_str(name);
    n->domain = dup_str("");
    const char *ins[] = {in0, in1, in2};
    bool ok = n->op_type && n->name && n->domain && PUSH(n->output, n->n_output, dup_str(out));
    for (int i = 0; i < 3 && ok && ins[i]; i++) ok = PUSH(n->input, n->n_input, dup_str(ins[i]));
    if (!ok) {
        onnx__node_proto__free_unpacked(n, NULL);
        return NULL;
    }
    return n;
}

/* [d0, d1], [d0] when d1 is 0, a scalar when both are. */
static Onnx__TensorProto *float_tensor(const char *name, const float *data, int64_t d0, int64_t d1) {
    Onnx__TensorProto *t = malloc(sizeof *t);
    if (!t) return NULL;
    onnx__tensor_proto__init(t);
    size_t count = d0 ? (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1) : 1;
    t->name = dup_str(name);
    t->has_data_type = 1;
    t->data_type = ONNXTL_FLOAT;
    t->dims = malloc(2 * sizeof *t->dims);
    t->raw_data.data = malloc(count * sizeof(float) + 1);
    t->has_raw_data = 1;
    if (!t->name || !t->dims || !t->raw_data.data) {
        onnx__tensor_proto__free_unpacked(t, NULL);
        return NULL;
    }
    t->dims[0] = d0;
    if (d1 > 0) t->dims[1] = d1;
    t->n_dims = d1 > 0 ? 2 : d0 ? 1 : 0;
    memcpy(t->raw_data.data, data, count * sizeof(float));
    t->raw_data.len = count * sizeof(float);
    return t;
}

/* A float tensor value_info of shape [N, width] (N symbolic). */
static Onnx__ValueInfoProto *value_info(const char *name, int64_t width) {
    Onnx__ValueInfoProto *v = calloc(1, sizeof *v);
    Onnx__TypeProto *tp = calloc(1, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = calloc(1, sizeof *tt);
    Onnx__TensorShapeProto *sh = calloc(1, sizeof *sh);
    Onnx__TensorShapeProto__Dimension *d0 = calloc(1, sizeof *d0), *d1 = calloc(1, sizeof *d1);
    if (!v || !tp || !tt || !sh || !d0 || !d1) {
        free(v), free(tp), free(tt), free(sh), free(d0), free(d1);
        return NULL;
    }
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    onnx__tensor_shape_proto__dimension__init(d0);
    onnx__tensor_shape_proto__dimension__init(d1);
    d0->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    d0->dim_param = dup_str("N");
    d1->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d1->dim_value = width;
    v->name = dup_str(name);
    v->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ONNXTL_FLOAT;
    tt->shape = sh;
    sh->dim = malloc(2 * sizeof *sh->dim);
    if (!sh->dim || !v->name || !d0->dim_param) {
        free(sh->dim);
        sh->dim = NULL;
        free(d0->dim_param), free(d0), free(d1);
        onnx__value_info_proto__free_unpacked(v, NULL);
        return NULL;
    }
    sh->dim[0] = d0;
    sh->dim[1] = d1;
    sh->n_dim = 2;
    return v;
}

/* Adds Gemm(transB)/Relu layers from `from`, then Softmax into "probabilities". */
/* The version of the default ONNX domain the model imports. */
static int64_t default_opset(const Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->n_opset_import; i++)
        if (!m->opset_import[i]->domain || !*m->opset_import[i]->domain) return m->opset_import[i]->version;
    return 1;
}

static onnxtl_status *push_or_free_attr(Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    if (a && PUSH(n->attribute, n->n_attribute, a)) return NULL;
    if (a) onnx__attribute_proto__free_unpacked(a, NULL);
    return otl_nomem();
}

static onnxtl_status *push_or_free_tensor(Onnx__GraphProto *g, Onnx__TensorProto *t) {
    if (t && PUSH(g->initializer, g->n_initializer, t)) return NULL;
    if (t) onnx__tensor_proto__free_unpacked(t, NULL);
    return otl_nomem();
}

/* Dropout of ratio h->dropout after hidden layer l: the ratio an attribute
 * before opset 12, a scalar input from then on. */
static onnxtl_status *append_dropout(Onnx__GraphProto *g, int64_t opset, const otl_head_spec *h, int l, const char *in,
                                     const char *out) {
    char nname[64], rname[64];
    snprintf(nname, sizeof nname, "onnxtl_head.%d.dropout", l);
    snprintf(rname, sizeof rname, "onnxtl_head.%d.dropout_ratio", l);
    Onnx__NodeProto *d = node("Dropout", nname, in, opset >= 12 ? rname : NULL, NULL, out);
    if (!d || !PUSH(g->node, g->n_node, d)) return otl_nomem();
    if (opset >= 12) return push_or_free_tensor(g, float_tensor(rname, &h->dropout, 0, 0));
    /* before opset 7, is_test (default 0) says whether it drops at inference */
    OTL_TRY(push_or_free_attr(d, attr_float("ratio", h->dropout)));
    return opset < 7 ? push_or_free_attr(d, attr_int("is_test", 1)) : NULL;
}

static onnxtl_status *append_head(Onnx__GraphProto *g, int64_t opset, const char *from, const otl_head_spec *h) {
    char cur[256], next[256], wname[64], bname[64], nname[64];
    snprintf(cur, sizeof cur, "%s", from);
    for (int l = 0; l < h->n_layers; l++) {
        snprintf(wname, sizeof wname, "onnxtl_head.%d.weight", l);
        snprintf(bname, sizeof bname, "onnxtl_head.%d.bias", l);
        snprintf(nname, sizeof nname, "onnxtl_head.%d.gemm", l);
        snprintf(next, sizeof next, "onnxtl_head.%d.out", l);
        Onnx__NodeProto *gemm = node("Gemm", nname, cur, wname, bname, next);
        if (!gemm || !PUSH(g->node, g->n_node, gemm) || !PUSH(g->node[g->n_node - 1]->attribute,
                                                              g->node[g->n_node - 1]->n_attribute, attr_int("transB", 1)))
            return otl_nomem();
        if (!PUSH(g->initializer, g->n_initializer, float_tensor(wname, h->w[l], h->dims[l + 1], h->dims[l])) ||
            !PUSH(g->initializer, g->n_initializer, float_tensor(bname, h->b[l], h->dims[l + 1], 0)))
            return otl_nomem();
        snprintf(cur, sizeof cur, "%s", next);
        if (l + 1 < h->n_layers) {
            snprintf(nname, sizeof nname, "onnxtl_head.%d.relu", l);
            snprintf(next, sizeof next, "onnxtl_head.%d.act", l);
            if (!PUSH(g->node, g->n_node, node("Relu", nname, cur, NULL, NULL, next))) return otl_nomem();
            snprintf(cur, sizeof cur, "%s", next);
            if (h->dropout > 0) {
                snprintf(next, sizeof next, "onnxtl_head.%d.dropped", l);
                OTL_TRY(append_dropout(g, opset, h, l, cur, next));
                snprintf(cur, sizeof cur, "%s", next);
            }
        }
    }
    Onnx__NodeProto *sm = node("Softmax", "onnxtl_head.softmax", cur, NULL, NULL, "probabilities");
    if (!sm || !PUSH(g->node, g->n_node, sm) ||
        !PUSH(g->node[g->n_node - 1]->attribute, g->node[g->n_node - 1]->n_attribute, attr_int("axis", 1)))
        return otl_nomem();
    for (size_t i = 0; i < g->n_output; i++) onnx__value_info_proto__free_unpacked(g->output[i], NULL);
    g->n_output = 0;
    return PUSH(g->output, g->n_output, value_info("probabilities", h->dims[h->n_layers])) ? NULL : otl_nomem();
}

static onnxtl_status *set_metadata(Onnx__ModelProto *m, const otl_head_spec *h) {
    for (int i = 0; i < h->n_meta; i++) {
        Onnx__StringStringEntryProto *e = NULL;
        for (size_t k = 0; k < m->n_metadata_props && !e; k++)
            if (m->metadata_props[k]->key && !strcmp(m->metadata_props[k]->key, h->meta_keys[i])) e = m->metadata_props[k];
        if (!e) {
            if (!(e = malloc(sizeof *e))) return otl_nomem();
            onnx__string_string_entry_proto__init(e);
            if (!(e->key = dup_str(h->meta_keys[i])) || !PUSH(m->metadata_props, m->n_metadata_props, e)) {
                free(e->key);
                free(e);
                return otl_nomem();
            }
        }
        free(e->value);
        if (!(e->value = dup_str(h->meta_values[i]))) return otl_nomem();
    }
    return NULL;
}

static bool name_in(char *const *names, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (names[i] && !strcmp(names[i], s)) return true;
    return false;
}

/* Keeps only the nodes that compute cut (and the initializers they read). */
/* Parts of a parsed model are freed with its allocator, which leaves the payloads in the file alone. */
static onnxtl_status *prune_to(Onnx__GraphProto *g, const char *cut, ProtobufCAllocator *parsed) {
    bool *keep = calloc(g->n_node + 1, sizeof *keep);
    char **want = calloc(g->n_node * 8 + 2, sizeof *want); /* tensors still to produce */
    size_t n_want = 0, cap = g->n_node * 8 + 2;
    if (!keep || !want) {
        free(keep);
        free(want);
        return otl_nomem();
    }
    want[n_want++] = (char *)cut;
    bool found = false;
    for (size_t i = g->n_node; i-- > 0;) { /* nodes are topologically ordered: walk backwards */
        Onnx__NodeProto *nd = g->node[i];
        for (size_t o = 0; o < nd->n_output && !keep[i]; o++) keep[i] = *nd->output[o] && name_in(want, n_want, nd->output[o]);
        if (!keep[i]) continue;
        found |= name_in(nd->output, nd->n_output, cut);
        for (size_t k = 0; k < nd->n_input && n_want < cap; k++) want[n_want++] = nd->input[k];
    }
    size_t w = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        if (keep[i]) g->node[w++] = g->node[i];
        else onnx__node_proto__free_unpacked(g->node[i], parsed);
    }
    g->n_node = w;
    w = 0;
    for (size_t i = 0; i < g->n_initializer; i++) {
        if (name_in(want, n_want, g->initializer[i]->name)) g->initializer[w++] = g->initializer[i];
        else onnx__tensor_proto__free_unpacked(g->initializer[i], parsed);
    }
    g->n_initializer = w;
    w = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        bool is_init = false;
        for (size_t k = 0; k < g->n_initializer && !is_init; k++) is_init = !strcmp(g->initializer[k]->name, g->input[i]->name);
        if (name_in(want, n_want, g->input[i]->name) || is_init) g->input[w++] = g->input[i];
        else onnx__value_info_proto__free_unpacked(g->input[i], parsed);
    }
    g->n_input = w;
    for (size_t i = 0; i < g->n_value_info; i++) onnx__value_info_proto__free_unpacked(g->value_info[i], parsed);
    g->n_value_info = 0;
    free(keep);
    free(want);
    return found ? NULL : otl_error(ONNXTL_ERR_MODEL, "no node produces the cut tensor '%s'", cut);
}

static onnxtl_status *write_model(const Onnx__ModelProto *m, const char *path) {
    size_t size = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes to serialise the model", size);
    onnx__model_proto__pack(m, buf);
    otl_atomic_file out;
    onnxtl_status *st = otl_atomic_open(path, &out);
    if (!st) st = otl_atomic_close(&out, otl_atomic_write(&out, buf, size));
    free(buf);
    return st;
}

onnxtl_status *otl_export_model(const char *backbone_path, const char *cut, int cut_rank, const otl_head_spec *h,
                                const char *out_path) {
    otl_proto_model parsed;
    OTL_TRY(otl_proto_read_model(backbone_path, &parsed));
    Onnx__ModelProto *m = parsed.proto;
    Onnx__GraphProto *g = m->graph;
    onnxtl_status *st = prune_to(g, cut, &parsed.allocator);
    const char *head_in = cut;
    if (!st && cut_rank != 2) { /* the head takes [N, features] */
        Onnx__NodeProto *fl = node("Flatten", "onnxtl_head.flatten", cut, NULL, NULL, "onnxtl_head.features");
        if (!fl || !PUSH(g->node, g->n_node, fl) || !PUSH(fl->attribute, fl->n_attribute, attr_int("axis", 1)))
            st = otl_nomem();
        head_in = "onnxtl_head.features";
    }
    if (!st) st = append_head(g, default_opset(m), head_in, h);
    if (!st) st = set_metadata(m, h);
    if (!st) st = write_model(m, out_path);
    otl_proto_model_release(&parsed);
    return st ? otl_error_wrap(st, "exporting %s", out_path) : NULL;
}

/* Gives t the float data, inline: the file's own payload (or its external
 * data reference) is dropped with the parsed model's allocator. */
static onnxtl_status *replace_data(Onnx__TensorProto *t, const float *data, size_t n, ProtobufCAllocator *parsed) {
    otl_proto_tensor_info info;
    OTL_TRY(otl_error_wrap(otl_proto_tensor_describe(t, &info), "initializer '%s'", t->name));
    if (info.dtype != ONNXTL_FLOAT) return otl_error(ONNXTL_ERR_MODEL, "initializer '%s' is not float", t->name);
    const size_t count = info.nbytes / sizeof(float), bytes = info.nbytes;
    if (count != n) /* the file changed since it was loaded */
        return otl_error(ONNXTL_ERR_MODEL, "initializer '%s' holds %zu values, not the %zu trained", t->name, count, n);
    uint8_t *copy = malloc(bytes + 1);
    if (!copy) return otl_nomem();
    memcpy(copy, data, bytes);
    if (t->raw_data.data) parsed->free(parsed->allocator_data, t->raw_data.data);
    t->raw_data = (ProtobufCBinaryData){bytes, copy};
    t->has_raw_data = 1;
    t->n_float_data = 0;
    for (size_t i = 0; i < t->n_external_data; i++) onnx__string_string_entry_proto__free_unpacked(t->external_data[i], parsed);
    t->n_external_data = 0;
    t->has_data_location = 0;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
    return NULL;
}

static bool consumed(const Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_node; i++)
        if (name_in(g->node[i]->input, g->node[i]->n_input, name)) return true;
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name && !strcmp(g->output[i]->name, name)) return true;
    return false;
}

/* A model written for inference: its Dropout nodes lose a training_mode
 * input (a model exported in training mode has one that says true), and the
 * Constant nodes that fed only those go too. */
static void dropout_for_inference(Onnx__GraphProto *g, ProtobufCAllocator *parsed) {
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *nd = g->node[i];
        if (!nd->op_type || strcmp(nd->op_type, "Dropout") || nd->n_input < 3) continue;
        parsed->free(parsed->allocator_data, nd->input[2]);
        nd->n_input = 2;
    }
    size_t w = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *nd = g->node[i];
        if (nd->op_type && !strcmp(nd->op_type, "Constant") && nd->n_output == 1 && !consumed(g, nd->output[0]))
            onnx__node_proto__free_unpacked(nd, parsed);
        else
            g->node[w++] = nd;
    }
    g->n_node = w;
}

onnxtl_status *otl_export_trained(const char *model_path, const char *const *names, const float *const *data,
                                  const size_t *counts, size_t n, const char *out_path) {
    otl_proto_model parsed;
    OTL_TRY(otl_proto_read_model(model_path, &parsed));
    Onnx__GraphProto *g = parsed.proto->graph;
    onnxtl_status *st = NULL;
    for (size_t i = 0; i < n && !st; i++) {
        Onnx__TensorProto *t = NULL;
        for (size_t k = 0; k < g->n_initializer && !t; k++)
            if (g->initializer[k]->name && !strcmp(g->initializer[k]->name, names[i])) t = g->initializer[k];
        st = t ? replace_data(t, data[i], counts[i], &parsed.allocator)
               : otl_error(ONNXTL_ERR_MODEL, "no initializer named '%s' to replace", names[i]);
    }
    if (!st) dropout_for_inference(g, &parsed.allocator);
    if (!st) st = write_model(parsed.proto, out_path);
    otl_proto_model_release(&parsed);
    return st ? otl_error_wrap(st, "exporting %s", out_path) : NULL;
}

onnxtl_status *otl_export_head(const otl_head_spec *h, const char *out_path) {
    Onnx__ModelProto *m = malloc(sizeof *m);
    Onnx__GraphProto *g = malloc(sizeof *g);
    Onnx__OperatorSetIdProto *op = malloc(sizeof *op);
    if (!m || !g || !op) {
        free(m), free(g), free(op);
        return otl_nomem();
    }
    onnx__model_proto__init(m);
    onnx__graph_proto__init(g);
    onnx__operator_set_id_proto__init(op);
    m->graph = g;
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->producer_name = dup_str("onnxtl");
    g->name = dup_str("onnxtl_head");
    op->domain = dup_str("");
    op->has_version = 1;
    op->version = 13;
    onnxtl_status *st = NULL;
    if (!PUSH(m->opset_import, m->n_opset_import, op) || !m->producer_name || !g->name || !op->domain ||
        !PUSH(g->input, g->n_input, value_info("features", h->dims[0])))
        st = otl_nomem();
    if (!st) st = append_head(g, op->version, "features", h);
    if (!st) st = set_metadata(m, h);
    if (!st) st = write_model(m, out_path);
    onnx__model_proto__free_unpacked(m, NULL);
    return st ? otl_error_wrap(st, "exporting %s", out_path) : NULL;
}
