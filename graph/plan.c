#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "dtype.h"

#define ARENA_ALIGN 64

size_t otl_tinfo_bytes(const otl_tinfo *t) {
    return (size_t)otl_tinfo_count(t) * otl_dtype_size(t->dtype);
}

void otl_plan_free(otl_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->nodes);
    free(p->t);
    free(p->offset);
    free(p->steps);
    free(p->inputs);
    free(p->outputs);
    free(p);
}

onnxtl_status *otl_plan_batch_inputs(const otl_graph *g, int64_t batch, otl_tinfo *inputs) {
    for (int i = 0; i < g->n_inputs; i++) {
        const otl_value *v = &g->values[g->inputs[i]];
        if (v->rank < 0)
            return otl_error(ONNXTL_ERR_ARG, "input '%s' declares no shape; give its shape explicitly",
                             v->name);
        inputs[i] = (otl_tinfo){.dtype = v->dtype, .rank = v->rank};
        for (int d = 0; d < v->rank; d++) inputs[i].dims[d] = v->dims[d] < 0 ? batch : v->dims[d];
    }
    return NULL;
}

bool otl_input_is_shape_like(const otl_tinfo *t) {
    return (t->dtype == ONNXTL_INT64 || t->dtype == ONNXTL_INT32) && t->rank <= 1 &&
           otl_tinfo_count(t) <= 64;
}

/* Keeps a plan-owned copy of a shape-like input's values as a constant. */
static onnxtl_status *own_input_values(otl_plan *p, int v, const otl_tinfo *in) {
    size_t bytes = otl_tinfo_bytes(in);
    void **owned = realloc(p->owned, (size_t)(p->n_owned + 1) * sizeof *owned);
    if (!owned) return otl_nomem();
    p->owned = owned;
    void *copy = malloc(bytes ? bytes : 1);
    if (!copy) return otl_nomem();
    memcpy(copy, in->data, bytes);
    p->owned[p->n_owned++] = copy;
    p->t[v].data = copy;
    return NULL;
}

static onnxtl_status *bind_inputs(otl_plan *p, const otl_tinfo *inputs) {
    const otl_graph *g = p->g;
    for (int i = 0; i < g->n_inputs; i++) {
        const otl_value *v = &g->values[g->inputs[i]];
        const otl_tinfo *in = &inputs[i];
        if (v->dtype && in->dtype != v->dtype)
            return otl_error(ONNXTL_ERR_ARG, "input '%s' must be %s, got %s", v->name,
                             otl_dtype_name(v->dtype), otl_dtype_name(in->dtype));
        if (v->rank >= 0 && in->rank != v->rank)
            return otl_error(ONNXTL_ERR_ARG, "input '%s' must have rank %d, got %d", v->name,
                             v->rank, in->rank);
        for (int d = 0; d < in->rank && v->rank >= 0; d++)
            if (v->dims[d] >= 0 && in->dims[d] != v->dims[d])
                return otl_error(ONNXTL_ERR_ARG, "input '%s' dimension %d must be %lld, got %lld",
                                 v->name, d, (long long)v->dims[d], (long long)in->dims[d]);
        int64_t count;
        if (!otl_shape_count(in->dims, in->rank, &count))
            return otl_error(ONNXTL_ERR_ARG, "input '%s' has an invalid shape", v->name);
        p->t[g->inputs[i]] = *in;
        p->t[g->inputs[i]].data = NULL;
        if (in->data && otl_input_is_shape_like(in)) OTL_TRY(own_input_values(p, g->inputs[i], in));
    }
    return NULL;
}

/* Marks the nodes that lead to the requested outputs. */
static onnxtl_status *mark_needed(const otl_plan *p, bool *node_needed) {
    const otl_graph *g = p->g;
    bool *value_needed = calloc((size_t)g->n_values + 1, sizeof *value_needed);
    if (!value_needed) return otl_nomem();
    for (int i = 0; i < p->n_outputs; i++) value_needed[p->outputs[i]] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const otl_node *n = &p->nodes[i];
        if (n->removed) continue;
        for (int k = 0; k < n->n_out; k++) node_needed[i] |= n->out[k] >= 0 && value_needed[n->out[k]];
        for (int k = 0; k < n->n_in && node_needed[i]; k++)
            if (n->in[k] >= 0) value_needed[n->in[k]] = true;
    }
    free(value_needed);
    return NULL;
}

static bool inputs_constant(const otl_node *n, const otl_tinfo *t) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && !t[n->in[k]].data) return false;
    return true;
}

/* Runs a node whose inputs are all known, keeping its outputs as constants. */
static onnxtl_status *fold_node(otl_plan *p, const otl_node *n, otl_eval_fn eval, void *ctx) {
    void *out[8] = {0};
    if (n->n_out > 8) return otl_error(ONNXTL_ERR_UNSUPPORTED, "too many outputs to fold");
    void **owned = realloc(p->owned, (size_t)(p->n_owned + n->n_out) * sizeof *owned);
    if (!owned) return otl_nomem();
    p->owned = owned;
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] < 0) continue;
        size_t bytes = otl_tinfo_bytes(&p->t[n->out[k]]);
        if (!(out[k] = malloc(bytes ? bytes : 1))) return otl_nomem();
        p->owned[p->n_owned++] = out[k];
    }
    OTL_TRY(eval(ctx, n, p->t, out));
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0) p->t[n->out[k]].data = out[k];
    return NULL;
}

/* The machine's memory, the most any one plan may ask for. */
static size_t memory_bytes(void) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t bytes;
    return pages > 0 && page > 0 && otl_mul_size((size_t)pages, (size_t)page, &bytes) ? bytes : SIZE_MAX;
}

static onnxtl_status *too_large(const char *what, size_t bytes, size_t limit) {
    return otl_error(ONNXTL_ERR_MODEL, "%s would take %zu MiB, more than this machine's %zu MiB of memory; "
                     "use a smaller --batch (or input size)", what, bytes >> 20, limit >> 20);
}

/* Each output's size, checked for overflow and against the machine's memory
 * before anything is allocated for it. */
static onnxtl_status *check_outputs(const otl_plan *p, const otl_node *n, size_t limit) {
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] < 0) continue;
        const otl_tinfo *o = &p->t[n->out[k]];
        int64_t count;
        size_t bytes;
        if (!otl_shape_count(o->dims, o->rank, &count) ||
            !otl_mul_size((size_t)count, otl_dtype_size(o->dtype), &bytes))
            return otl_error(ONNXTL_ERR_MODEL, "output %d is too large", k);
        if (bytes > limit) {
            char what[64];
            snprintf(what, sizeof what, "output %d", k);
            return too_large(what, bytes, limit);
        }
    }
    return NULL;
}

/* Keeps a plan-owned copy of n ints. */
static onnxtl_status *own_ints(otl_plan *p, const int *v, int n, int **out) {
    void **owned = realloc(p->owned, (size_t)(p->n_owned + 1) * sizeof *owned);
    if (!owned) return otl_nomem();
    p->owned = owned;
    if (!(*out = malloc(sizeof **out * (size_t)n))) return otl_nomem();
    memcpy(*out, v, sizeof **out * (size_t)n);
    p->owned[p->n_owned++] = *out;
    return NULL;
}

/* The load-time residual fusion assumed that the Add's two inputs have one
 * shape.  Where they do not (a broadcasting Add, or a skip not yet computed),
 * this plan runs the Conv and the Add apart, as the model wrote them. */
static onnxtl_status *check_residual(otl_plan *p, int i, bool *needed) {
    otl_node *conv = &p->nodes[i], *add = &p->nodes[conv->attrs.residual_add];
    int skip = conv->in[3], conv_out = add->in[add->in[0] == skip];
    otl_node plain = *conv;
    plain.n_in = 3;
    plain.out = &conv_out;
    plain.attrs.fused_add = plain.attrs.fused_relu = 0;
    OTL_TRY(otl_infer_node(&plain, p->t));
    const otl_tinfo *y = &p->t[conv_out], *x = &p->t[skip];
    if (x->rank == y->rank && !memcmp(x->dims, y->dims, sizeof(int64_t) * (size_t)y->rank)) return NULL;
    OTL_TRY(own_ints(p, &conv_out, 1, &plain.out));
    *conv = plain;
    add->removed = false;
    needed[conv->attrs.residual_add] = true;
    return NULL;
}

/* A node the loader kept without running it, or one reading a value onnxtl
 * cannot hold, is an error now that the plan needs it. */
static onnxtl_status *runnable(const otl_graph *g, const otl_node *n) {
    if (n->op == OP_UNSUPPORTED) return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s", n->unsupported);
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && g->values[n->in[k]].unusable)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "input '%s': %s", g->values[n->in[k]].name,
                             g->values[n->in[k]].unusable);
    return NULL;
}

static onnxtl_status *infer_and_fold(otl_plan *p, bool *needed, otl_eval_fn eval, void *ctx) {
    const otl_graph *g = p->g;
    const size_t limit = memory_bytes();
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = &p->nodes[i];
        if (!needed[i]) continue;
        onnxtl_status *st = runnable(g, n);
        if (!st && n->op == OP_CONV && n->attrs.fused_add) st = check_residual(p, i, needed);
        if (!st) st = otl_infer_node(n, p->t);
        if (!st) st = check_outputs(p, n, limit);
        bool foldable = n->op == OP_SHAPE || inputs_constant(n, p->t);
        if (!st && foldable) st = fold_node(p, n, eval, ctx);
        if (st) return otl_error_wrap(st, "node '%s' (%s)", n->name, otl_op_name(n->op));
        if (!foldable) p->steps[p->n_steps++] = i;
    }
    return NULL;
}

typedef struct {
    int value;
    size_t bytes;
    int first, last; /* steps during which the buffer is live */
} lifetime;

static int by_size_desc(const void *a, const void *b) {
    const lifetime *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : x->value - y->value;
}

/* A 1x1 Conv and a depthwise Conv right after it that reads its output may
 * run as one step (the CPU backend fuses MobileNet's and EfficientNet's
 * expansions so that their wide output never goes to memory).  The first
 * one's input then lives through the second, whose output must not take
 * its bytes. */
static void keep_pointwise_inputs(const otl_plan *p, int *last) {
    for (int s = 0; s + 1 < p->n_steps; s++) {
        const otl_node *n = otl_plan_step(p, s), *d = otl_plan_step(p, s + 1);
        if (n->op != OP_CONV || d->op != OP_CONV || d->attrs.group < 2 || d->in[0] != n->out[0] || n->in[0] < 0)
            continue;
        const otl_tinfo *w = &p->t[n->in[1]];
        if (w->rank == 4 && w->dims[2] == 1 && w->dims[3] == 1 && last[n->in[0]] == s) last[n->in[0]] = s + 1;
    }
}

/* The step after which each value is no longer read (n_steps for outputs). */
static void last_uses(const otl_plan *p, int *last) {
    const otl_graph *g = p->g;
    for (int v = 0; v < g->n_values; v++) last[v] = -1;
    for (int s = 0; s < p->n_steps; s++) {
        const otl_node *n = otl_plan_step(p, s);
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) last[n->in[k]] = s;
    }
    for (int i = 0; i < p->n_outputs; i++) last[p->outputs[i]] = p->n_steps;
    keep_pointwise_inputs(p, last);
}

/* Ops whose output is their input's bytes, which then copy nothing. */
static bool is_reshape(otl_op op) {
    switch (op) {
    case OP_FLATTEN: case OP_RESHAPE: case OP_SQUEEZE: case OP_UNSQUEEZE: case OP_IDENTITY: case OP_DROPOUT:
        return true;
    default: return false;
    }
}

/* A step may take over the buffer of an input whose last use it is, where
 * that input holds the output's bytes: a Conv its fused residual's skip
 * tensor, a reshape its input.  Not where the step reads that tensor as
 * another input too: Add(Conv(h), h) would have the Conv write over the h
 * it is reading. */
static int inplace_base(const otl_plan *p, const otl_node *n, int s, const int *slot, const int *last) {
    const int k = n->op == OP_CONV && n->attrs.fused_add ? 3 : is_reshape(n->op) ? 0 : -1;
    const int base = k < 0 ? -1 : n->in[k];
    if (base < 0 || n->out[0] < 0 || slot[base] < 0 || last[base] != s) return -1;
    for (int i = 0; i < n->n_in; i++)
        if (i != k && n->in[i] == base) return -1;
    const otl_tinfo *x = &p->t[base], *y = &p->t[n->out[0]];
    return x->dtype == y->dtype && otl_tinfo_count(x) == otl_tinfo_count(y) ? base : -1;
}

/* One lifetime per buffer; *aliases lists (value, base value) pairs that share one. */
static onnxtl_status *collect_lifetimes(otl_plan *p, lifetime *lt, int *n_lt, int *aliases, int *n_alias) {
    const otl_graph *g = p->g;
    int *slot = malloc(((size_t)g->n_values + 1) * sizeof *slot);
    int *last = malloc(((size_t)g->n_values + 1) * sizeof *last);
    if (!slot || !last) {
        free(slot);
        free(last);
        return otl_nomem();
    }
    last_uses(p, last);
    for (int v = 0; v < g->n_values; v++) slot[v] = -1;
    *n_lt = *n_alias = 0;
    for (int s = 0; s < p->n_steps; s++) {
        const otl_node *n = otl_plan_step(p, s);
        int base = inplace_base(p, n, s, slot, last);
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0) continue;
            if (k == 0 && base >= 0) {
                slot[v] = slot[base];
                aliases[2 * *n_alias] = v;
                aliases[2 * (*n_alias)++ + 1] = base;
            } else {
                size_t bytes = (otl_tinfo_bytes(&p->t[v]) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
                slot[v] = *n_lt;
                lt[(*n_lt)++] = (lifetime){v, bytes ? bytes : ARENA_ALIGN, s, s};
            }
            if (last[v] > lt[slot[v]].last) lt[slot[v]].last = last[v];
        }
    }
    free(slot);
    free(last);
    return NULL;
}

/* Greedy placement, largest first: each buffer takes the lowest offset that
 * overlaps no already placed buffer whose lifetime intersects its own. */
static void place_buffers(otl_plan *p, lifetime *lt, int n) {
    qsort(lt, (size_t)n, sizeof *lt, by_size_desc);
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < i; j++) {
                if (lt[j].last < lt[i].first || lt[i].last < lt[j].first) continue;
                size_t jo = (size_t)p->offset[lt[j].value];
                if (off < jo + lt[j].bytes && jo < off + lt[i].bytes) {
                    off = jo + lt[j].bytes;
                    moved = true;
                }
            }
        }
        p->offset[lt[i].value] = (int64_t)off;
        if (off + lt[i].bytes > p->arena_bytes) p->arena_bytes = off + lt[i].bytes;
    }
}

static onnxtl_status *plan_memory(otl_plan *p) {
    const otl_graph *g = p->g;
    for (int v = 0; v < g->n_values; v++) p->offset[v] = -1;
    lifetime *lt = calloc((size_t)g->n_values + 1, sizeof *lt);
    int *aliases = calloc(2 * ((size_t)g->n_values + 1), sizeof *aliases);
    int n = 0, n_alias = 0;
    onnxtl_status *st = lt && aliases ? collect_lifetimes(p, lt, &n, aliases, &n_alias) : otl_nomem();
    if (!st) {
        place_buffers(p, lt, n);
        for (int i = 0; i < n_alias; i++) p->offset[aliases[2 * i]] = p->offset[aliases[2 * i + 1]];
        const size_t limit = memory_bytes();
        if (p->arena_bytes > limit) st = too_large("the activations", p->arena_bytes, limit);
    }
    free(lt);
    free(aliases);
    return st;
}

static onnxtl_status *plan_init(otl_plan *p, const otl_graph *g, const int *outputs, int n_outputs) {
    p->g = g;
    p->nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *p->nodes);
    p->t = calloc((size_t)g->n_values + 1, sizeof *p->t);
    p->offset = calloc((size_t)g->n_values + 1, sizeof *p->offset);
    p->steps = calloc((size_t)g->n_nodes + 1, sizeof *p->steps);
    p->inputs = calloc((size_t)g->n_inputs + 1, sizeof *p->inputs);
    p->outputs = calloc((size_t)n_outputs + 1, sizeof *p->outputs);
    if (!p->nodes || !p->t || !p->offset || !p->steps || !p->inputs || !p->outputs) return otl_nomem();
    memcpy(p->nodes, g->nodes, sizeof *p->nodes * (size_t)g->n_nodes);
    memcpy(p->inputs, g->inputs, sizeof *p->inputs * (size_t)g->n_inputs);
    p->n_inputs = g->n_inputs;
    p->n_outputs = n_outputs;
    memcpy(p->outputs, outputs, sizeof(int) * (size_t)n_outputs);
    for (int i = 0; i < n_outputs; i++) {
        const otl_value *v = &g->values[outputs[i]];
        if (v->unusable)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "output '%s'%s%s%s: %s", v->name, v->producer >= 0 ? " of node '" : "",
                             v->producer >= 0 ? g->nodes[v->producer].name : "", v->producer >= 0 ? "'" : "", v->unusable);
    }
    for (int v = 0; v < g->n_values; v++) {
        const otl_value *x = &g->values[v];
        if (!x->data) continue;
        p->t[v] = (otl_tinfo){.dtype = x->dtype, .rank = x->rank, .data = x->data};
        memcpy(p->t[v].dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    }
    return NULL;
}

onnxtl_status *otl_plan_build(const otl_graph *g, const otl_tinfo *inputs, const int *outputs,
                              int n_outputs, otl_eval_fn eval, void *eval_ctx, otl_plan **out) {
    otl_plan *p = calloc(1, sizeof *p);
    bool *needed = calloc((size_t)g->n_nodes + 1, sizeof *needed);
    onnxtl_status *st = p && needed ? NULL : otl_nomem();
    if (!st) st = plan_init(p, g, outputs, n_outputs);
    if (!st) st = bind_inputs(p, inputs);
    if (!st) st = mark_needed(p, needed);
    if (!st) st = infer_and_fold(p, needed, eval, eval_ctx);
    if (!st) st = plan_memory(p);
    free(needed);
    if (st) {
        otl_plan_free(p);
        return st;
    }
    *out = p;
    return NULL;
}

/* Where each value is computed: the step index, or -1 (input, constant). */
static int *producing_steps(const otl_plan *p) {
    int *at = malloc(((size_t)p->g->n_values + 1) * sizeof *at);
    if (!at) return NULL;
    for (int v = 0; v < p->g->n_values; v++) at[v] = -1;
    for (int s = 0; s < p->n_steps; s++) {
        const otl_node *n = otl_plan_step(p, s);
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0) at[n->out[k]] = s;
    }
    return at;
}

/* Lists each value once: those read by steps [first, last) that come from
 * outside them (inputs), or those they compute that are read later (outputs).
 * at gives each value's producing step, used its last reading one. */
static onnxtl_status *segment_io(const otl_plan *p, otl_plan *seg, int first, int last, const int *at,
                                 const int *used) {
    bool *listed = calloc((size_t)p->g->n_values + 1, sizeof *listed);
    seg->inputs = calloc((size_t)p->g->n_values + 1, sizeof *seg->inputs);
    seg->outputs = calloc((size_t)p->g->n_values + 1, sizeof *seg->outputs);
    if (!listed || !seg->inputs || !seg->outputs) {
        free(listed);
        return otl_nomem();
    }
    for (int s = first; s < last; s++) {
        const otl_node *n = otl_plan_step(p, s);
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0 || listed[v] || p->t[v].data || (at[v] >= first && at[v] < last)) continue;
            listed[v] = true;
            seg->inputs[seg->n_inputs++] = v;
        }
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v >= 0 && !listed[v] && used[v] >= last) {
                listed[v] = true;
                seg->outputs[seg->n_outputs++] = v;
            }
        }
    }
    free(listed);
    return NULL;
}

onnxtl_status *otl_plan_segment(const otl_plan *p, int first, int last, otl_plan **out) {
    const otl_graph *g = p->g;
    otl_plan *seg = calloc(1, sizeof *seg);
    int *at = producing_steps(p), *used = malloc(((size_t)g->n_values + 1) * sizeof *used);
    onnxtl_status *st = seg && at && used ? NULL : otl_nomem();
    if (!st) last_uses(p, used);
    if (!st) {
        seg->g = g;
        seg->nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *seg->nodes);
        seg->t = malloc(((size_t)g->n_values + 1) * sizeof *seg->t);
        seg->offset = malloc(((size_t)g->n_values + 1) * sizeof *seg->offset);
        seg->steps = malloc(((size_t)(last - first) + 1) * sizeof *seg->steps);
        if (!seg->nodes || !seg->t || !seg->offset || !seg->steps) st = otl_nomem();
    }
    if (!st) {
        memcpy(seg->nodes, p->nodes, sizeof *seg->nodes * (size_t)g->n_nodes);
        memcpy(seg->t, p->t, sizeof *seg->t * (size_t)g->n_values);
        memcpy(seg->steps, p->steps + first, sizeof *seg->steps * (size_t)(last - first));
        seg->n_steps = last - first;
        st = segment_io(p, seg, first, last, at, used);
    }
    if (!st) st = plan_memory(seg);
    free(at);
    free(used);
    if (st) {
        otl_plan_free(seg);
        return st;
    }
    *out = seg;
    return NULL;
}

onnxtl_status *otl_plan_downstream(const otl_plan *p, int v, otl_plan **out) {
    const char *name = p->g->values[v].name;
    int *at = producing_steps(p);
    if (!at) return otl_nomem();
    const int first = at[v] + 1;
    free(at);
    if (first == 0 && !(p->n_inputs == 1 && p->inputs[0] == v))
        return otl_error(ONNXTL_ERR_ARG, "no step computes '%s' on the way to the output (a constant, or a tensor the "
                         "output does not depend on)", name);
    if (first == p->n_steps) return otl_error(ONNXTL_ERR_ARG, "no layer follows '%s'", name);
    otl_plan *seg;
    OTL_TRY(otl_plan_segment(p, first, p->n_steps, &seg));
    if (!seg->n_inputs) {
        otl_plan_free(seg);
        return otl_error(ONNXTL_ERR_ARG, "the output does not depend on '%s'", name);
    }
    for (int i = 0; i < seg->n_inputs; i++)
        if (seg->inputs[i] != v) {
            onnxtl_status *st = otl_error(ONNXTL_ERR_ARG, "the layers after '%s' also read '%s', which comes before "
                                          "it: start from a tensor that every path to the output goes through", name,
                                          p->g->values[seg->inputs[i]].name);
            otl_plan_free(seg);
            return st;
        }
    *out = seg;
    return NULL;
}
