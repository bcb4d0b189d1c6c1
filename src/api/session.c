/* The public API: models, sessions and the plan cache behind them. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "device.h"
#include "placement.h"
#include "dtype.h"
#include "onnxtl.h"
#include "model.h"
#include "plan.h"

struct onnxtl_model {
    otl_graph *g;
};

/* One instantiation of the model for one set of input shapes. */
typedef struct cached_plan {
    otl_tinfo *inputs; /* the shapes it was built for */
    otl_plan *plan;
    otl_placed *placed; /* its steps on the session's backend, and on the CPU where that lacks them */
    void **outputs;    /* host buffers handed to the caller */
    struct cached_plan *next;
} cached_plan;

struct onnxtl_session {
    const onnxtl_model *model;
    const otl_backend *backend;
    otl_backend_config cfg;
    otl_ranges ranges; /* int8: parsed from opts->calibration */
    cached_plan *plans;
};

static onnxtl_status *model_of(onnxtl_status *st, otl_graph *g, onnxtl_model **out) {
    onnxtl_model *m = st ? NULL : calloc(1, sizeof *m);
    if (!st && !m) st = otl_nomem();
    if (st) {
        otl_graph_free(g);
        return st;
    }
    m->g = g;
    *out = m;
    return NULL;
}

onnxtl_status *onnxtl_model_load(const char *path, onnxtl_model **out) {
    if (!path || !out) return otl_error(ONNXTL_ERR_ARG, "onnxtl_model_load: NULL argument");
    otl_graph *g = NULL;
    onnxtl_status *st = otl_graph_load(path, &g);
    return model_of(st, g, out);
}

onnxtl_status *otl_model_load_as_written(const char *path, onnxtl_model **out) {
    otl_graph *g = NULL;
    onnxtl_status *st = otl_graph_load_as_written(path, &g);
    return model_of(st, g, out);
}

onnxtl_status *onnxtl_model_load_memory(const void *data, size_t size, const char *name, onnxtl_model **out) {
    if (!data || !name || !out) return otl_error(ONNXTL_ERR_ARG, "onnxtl_model_load_memory: NULL argument");
    otl_graph *g = NULL;
    onnxtl_status *st = otl_graph_load_memory(data, size, name, &g);
    return model_of(st, g, out);
}

void onnxtl_model_release(onnxtl_model *m) {
    if (!m) return;
    otl_graph_free(m->g);
    free(m);
}

const otl_graph *otl_model_graph(const onnxtl_model *m) { return m->g; }

size_t onnxtl_model_input_count(const onnxtl_model *m) { return (size_t)m->g->n_inputs; }
size_t onnxtl_model_output_count(const onnxtl_model *m) { return (size_t)m->g->n_outputs; }

static void describe(const otl_value *v, onnxtl_tensor *d) {
    memset(d, 0, sizeof *d);
    d->name = v->name;
    d->dtype = v->dtype;
    d->rank = v->rank;
    for (int i = 0; i < v->rank; i++) d->dims[i] = v->dims[i];
}

onnxtl_status *otl_model_plan(const onnxtl_model *m, const otl_tinfo *inputs, int64_t batch, const int *values,
                              int n_values, otl_plan **out) {
    const otl_graph *g = m->g;
    otl_tinfo *at_batch = inputs ? NULL : calloc((size_t)g->n_inputs + 1, sizeof *at_batch);
    if (!inputs && !at_batch) return otl_nomem();
    onnxtl_status *st = inputs ? NULL : otl_plan_batch_inputs(g, batch, at_batch);
    if (!st) st = otl_plan_build(g, inputs ? inputs : at_batch, values, n_values, otl_cpu_eval, NULL, out);
    free(at_batch);
    return st ? otl_error_wrap(st, "%s", g->path) : NULL;
}

onnxtl_status *otl_model_shape(const onnxtl_model *m, const otl_tinfo *inputs, int64_t batch, int v, otl_tinfo *shape) {
    otl_plan *p;
    OTL_TRY(otl_model_plan(m, inputs, batch, &v, 1, &p));
    *shape = p->t[v];
    shape->data = NULL;
    otl_plan_free(p);
    return NULL;
}

onnxtl_status *otl_model_fallbacks(const onnxtl_model *m, const onnxtl_options *opts,
                                   void (*each)(void *ctx, const otl_node *n, const char *why), void *ctx, int *n_steps) {
    otl_device device;
    const otl_backend *backend;
    OTL_TRY(otl_device_parse(opts->device, &device));
    OTL_TRY(otl_device_backend(&device, opts->precision, &backend));
    otl_backend_env env;
    otl_backend_env_read(&env);
    otl_plan *p;
    OTL_TRY(otl_model_plan(m, NULL, 1, m->g->outputs, m->g->n_outputs, &p));
    for (int i = 0; i < p->n_steps; i++) {
        const char *why = otl_place_fallback(p, i, backend, &env);
        if (why) each(ctx, otl_plan_step(p, i), why);
    }
    *n_steps = p->n_steps;
    otl_plan_free(p);
    return NULL;
}

void onnxtl_model_input(const onnxtl_model *m, size_t i, onnxtl_tensor *d) {
    describe(&m->g->values[m->g->inputs[i]], d);
}

void onnxtl_model_output(const onnxtl_model *m, size_t i, onnxtl_tensor *d) {
    describe(&m->g->values[m->g->outputs[i]], d);
}

onnxtl_status *onnxtl_session_create(const onnxtl_model *model, const onnxtl_options *opts,
                                     onnxtl_session **out) {
    if (!model || !out) return otl_error(ONNXTL_ERR_ARG, "onnxtl_session_create: NULL argument");
    const onnxtl_options none = {0};
    if (!opts) opts = &none;
    otl_device device;
    const otl_backend *backend;
    OTL_TRY(otl_device_parse(opts->device, &device));
    OTL_TRY(otl_device_backend(&device, opts->precision, &backend));
    onnxtl_session *s = calloc(1, sizeof *s);
    if (!s) return otl_nomem();
    s->model = model;
    s->backend = backend;
    s->cfg = (otl_backend_config){.threads = opts->threads, .device_index = device.index, .precision = opts->precision,
                                  .ranges = &s->ranges, .log = {opts->log, opts->log_ctx}};
    otl_backend_env_read(&s->cfg.env);
    /* int8 scales: the caller's, or those fit-head stored in the model */
    const char *ranges = opts->calibration ? opts->calibration : otl_graph_meta(model->g, "onnxtl.int8_ranges");
    onnxtl_status *st = ranges && opts->precision == ONNXTL_PRECISION_INT8
                            ? otl_ranges_parse(ranges, strlen(ranges), &s->ranges) : NULL;
    if (st) {
        free(s);
        return opts->calibration ? otl_error_wrap(st, "int8 calibration")
                                 : otl_error_wrap(st, "%s: metadata onnxtl.int8_ranges", model->g->path);
    }
    *out = s;
    return NULL;
}

static void free_cached(const onnxtl_session *s, cached_plan *c) {
    otl_placed_release(c->placed);
    if (c->outputs && c->plan)
        for (int i = 0; i < c->plan->n_outputs; i++) free(c->outputs[i]);
    free(c->outputs);
    otl_plan_free(c->plan);
    free(c->inputs);
    free(c);
}

onnxtl_status *onnxtl_session_alloc_host(onnxtl_session *s, size_t bytes, void **out) {
    if (!s || !out) return otl_error(ONNXTL_ERR_ARG, "onnxtl_session_alloc_host: NULL argument");
    if (s->backend->host_alloc) return s->backend->host_alloc(&s->cfg, bytes, out);
    *out = malloc(bytes ? bytes : 1);
    return *out ? NULL : otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
}

void onnxtl_session_free_host(onnxtl_session *s, void *p) {
    if (!s || !p) return;
    if (s->backend->host_free) s->backend->host_free(p);
    else free(p);
}

void onnxtl_session_release(onnxtl_session *s) {
    if (!s) return;
    while (s->plans) {
        cached_plan *next = s->plans->next;
        free_cached(s, s->plans);
        s->plans = next;
    }
    otl_ranges_free(&s->ranges);
    free(s);
}

/* A cached plan fits when shapes match and shape-like inputs hold the same values. */
static bool plan_fits(const cached_plan *c, const otl_graph *g, const otl_tinfo *b) {
    const otl_tinfo *a = c->inputs;
    for (int i = 0; i < g->n_inputs; i++) {
        if (a[i].dtype != b[i].dtype || a[i].rank != b[i].rank ||
            memcmp(a[i].dims, b[i].dims, sizeof(int64_t) * (size_t)a[i].rank))
            return false;
        const void *held = c->plan->t[g->inputs[i]].data;
        if (held && memcmp(held, b[i].data, otl_tinfo_bytes(&b[i]))) return false;
    }
    return true;
}

static onnxtl_status *build_cached(onnxtl_session *s, const otl_tinfo *shapes, const int *outputs,
                                   int n_outputs, cached_plan **out) {
    const otl_graph *g = s->model->g;
    cached_plan *c = calloc(1, sizeof *c);
    if (!c) return otl_nomem();
    onnxtl_status *st = NULL;
    c->inputs = calloc((size_t)g->n_inputs + 1, sizeof *c->inputs);
    c->outputs = calloc((size_t)n_outputs + 1, sizeof *c->outputs);
    if (!c->inputs || !c->outputs) {
        st = otl_nomem();
        goto fail;
    }
    memcpy(c->inputs, shapes, sizeof *shapes * (size_t)g->n_inputs);
    for (int i = 0; i < g->n_inputs; i++) c->inputs[i].data = NULL; /* the caller's buffer */
    OTL_TRY_GOTO(st, otl_plan_build(g, shapes, outputs, n_outputs, otl_cpu_eval, NULL, &c->plan), fail);
    for (int i = 0; i < n_outputs; i++) {
        size_t bytes = otl_tinfo_bytes(&c->plan->t[outputs[i]]);
        if (!(c->outputs[i] = malloc(bytes ? bytes : 1))) {
            st = otl_nomem();
            goto fail;
        }
    }
    OTL_TRY_GOTO(st, otl_place(c->plan, s->backend, &s->cfg, &c->placed), fail);
    *out = c;
    return NULL;
fail:
    free_cached(s, c);
    return st;
}

/* Finds or builds the plan for these input shapes and output selection. */
static onnxtl_status *plan_for(onnxtl_session *s, const otl_tinfo *shapes, const int *outputs,
                               int n_outputs, cached_plan **out) {
    const otl_graph *g = s->model->g;
    for (cached_plan *c = s->plans; c; c = c->next) {
        if (c->plan->n_outputs == n_outputs && plan_fits(c, g, shapes) &&
            !memcmp(c->plan->outputs, outputs, sizeof(int) * (size_t)n_outputs)) {
            *out = c;
            return NULL;
        }
    }
    OTL_TRY(build_cached(s, shapes, outputs, n_outputs, out));
    (*out)->next = s->plans;
    s->plans = *out;
    return NULL;
}

static onnxtl_status *match_inputs(const otl_graph *g, const onnxtl_tensor *inputs, size_t n,
                                   otl_tinfo *shapes, const void **data) {
    for (int i = 0; i < g->n_inputs; i++) {
        const char *name = g->values[g->inputs[i]].name;
        const onnxtl_tensor *found = NULL;
        for (size_t k = 0; k < n && !found; k++)
            if (inputs[k].name && !strcmp(inputs[k].name, name)) found = &inputs[k];
        if (!found) return otl_error(ONNXTL_ERR_ARG, "input '%s' is not given", name);
        if (found->rank < 0 || found->rank > ONNXTL_MAX_RANK || !found->data)
            return otl_error(ONNXTL_ERR_ARG, "input '%s' has no data or a bad rank", name);
        shapes[i] = (otl_tinfo){.dtype = found->dtype, .rank = found->rank};
        memcpy(shapes[i].dims, found->dims, sizeof(int64_t) * (size_t)found->rank);
        if (otl_input_is_shape_like(&shapes[i])) shapes[i].data = found->data;
        data[i] = found->data;
    }
    return NULL;
}

static onnxtl_status *match_outputs(const otl_graph *g, const onnxtl_tensor *outputs, size_t n,
                                    int *ids) {
    for (size_t i = 0; i < n; i++) {
        ids[i] = outputs[i].name ? otl_graph_find(g, outputs[i].name) : -1;
        if (ids[i] < 0)
            return otl_error(ONNXTL_ERR_ARG, "no tensor named '%s'",
                             outputs[i].name ? outputs[i].name : "(null)");
    }
    return NULL;
}

onnxtl_status *onnxtl_session_run(onnxtl_session *s, const onnxtl_tensor *inputs, size_t n_inputs,
                                  onnxtl_tensor *outputs, size_t n_outputs) {
    if (!s || (!inputs && n_inputs) || !outputs || !n_outputs)
        return otl_error(ONNXTL_ERR_ARG, "onnxtl_session_run: bad arguments");
    const otl_graph *g = s->model->g;
    otl_tinfo *shapes = calloc((size_t)g->n_inputs + 1, sizeof *shapes);
    const void **data = calloc((size_t)g->n_inputs + 1, sizeof *data);
    int *ids = calloc(n_outputs, sizeof *ids);
    onnxtl_status *st = shapes && data && ids ? NULL : otl_nomem();
    cached_plan *c = NULL;
    if (!st) st = match_inputs(g, inputs, n_inputs, shapes, data);
    if (!st) st = match_outputs(g, outputs, n_outputs, ids);
    if (!st) st = plan_for(s, shapes, ids, (int)n_outputs, &c);
    if (!st) st = otl_placed_run(c->placed, data, c->outputs);
    if (st) st = otl_error_wrap(st, "%s", g->path);
    for (size_t i = 0; !st && i < n_outputs; i++) {
        const otl_tinfo *t = &c->plan->t[ids[i]];
        outputs[i].dtype = t->dtype;
        outputs[i].rank = t->rank;
        memcpy(outputs[i].dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
        outputs[i].data = c->outputs[i];
    }
    free(shapes);
    free(data);
    free(ids);
    return st;
}
