#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

/* Open-addressing map from value name to index; grows to stay under half full. */
struct otl_name_map {
    size_t cap;
    int *slots; /* value index + 1, 0 for empty */
};

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t find_slot(const otl_graph *g, const char *name) {
    const struct otl_name_map *m = g->names;
    size_t i = hash_name(name) & (m->cap - 1);
    while (m->slots[i] && strcmp(g->values[m->slots[i] - 1].name, name))
        i = (i + 1) & (m->cap - 1);
    return i;
}

int otl_graph_find(const otl_graph *g, const char *name) {
    if (!g->names || !name) return -1;
    return g->names->slots[find_slot(g, name)] - 1;
}

static onnxtl_status *grow_map(otl_graph *g) {
    struct otl_name_map *m = g->names;
    size_t cap = m->cap ? m->cap * 2 : 64;
    int *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) {
        m->slots = old;
        return otl_nomem();
    }
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i]) m->slots[find_slot(g, g->values[old[i] - 1].name)] = old[i];
    free(old);
    return NULL;
}

onnxtl_status *otl_graph_add_value(otl_graph *g, const char *name, int *index) {
    if (!g->names && !(g->names = calloc(1, sizeof *g->names))) return otl_nomem();
    if ((size_t)(g->n_values + 1) * 2 > g->names->cap) OTL_TRY(grow_map(g));
    if (otl_graph_find(g, name) >= 0)
        return otl_error(ONNXTL_ERR_MODEL, "tensor name '%s' is defined twice", name);
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 64;
        otl_value *v = realloc(g->values, (size_t)cap * sizeof *v);
        if (!v) return otl_nomem();
        g->values = v;
        g->cap_values = cap;
    }
    otl_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->rank = -1;
    v->producer = -1;
    if (!(v->name = strdup(name))) return otl_nomem();
    g->names->slots[find_slot(g, name)] = g->n_values + 1;
    *index = g->n_values++;
    return NULL;
}

void otl_graph_free(otl_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) {
        free(g->values[i].name);
        free(g->values[i].unusable);
        if (g->values[i].data_owned) free(g->values[i].data);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].unsupported);
        free(g->nodes[i].in);
        free(g->nodes[i].out);
    }
    if (g->names) free(g->names->slots);
    free(g->names);
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->weights);
    free(g->path);
    otl_model_files_release(&g->files);
    free(g->producer_name);
    free(g->producer_version);
    for (int i = 0; i < g->n_meta; i++) {
        free(g->meta_keys[i]);
        free(g->meta_values[i]);
    }
    free(g->meta_keys);
    free(g->meta_values);
    free(g);
}

void otl_graph_param_stats(const otl_graph *g, int64_t *count, size_t *bytes) {
    *count = 0;
    *bytes = 0;
    bool *seen = calloc((size_t)g->n_values + 1, sizeof *seen);
    if (!seen) return;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in && !n->removed; k++) {
            const otl_value *v = n->in[k] >= 0 ? &g->values[n->in[k]] : NULL;
            if (!v || !v->data || seen[n->in[k]]) continue;
            seen[n->in[k]] = true;
            int64_t c = 1;
            for (int d = 0; d < v->rank; d++) c *= v->dims[d];
            *count += c;
            *bytes += (size_t)c * otl_dtype_size(v->dtype);
        }
    }
    free(seen);
}

const char *otl_graph_meta(const otl_graph *g, const char *key) {
    for (int i = 0; i < g->n_meta; i++)
        if (!strcmp(g->meta_keys[i], key)) return g->meta_values[i];
    return NULL;
}
