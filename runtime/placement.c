#include "placement.h"

#include <stdlib.h>
#include <string.h>

/* Consecutive steps on one backend. */
typedef struct {
    const otl_backend *backend;
    otl_plan *plan; /* the segment's own; NULL when one segment runs the whole plan */
    void *state;
    const void **in; /* its inputs' host data, gathered before each run */
    void **out;      /* host buffers for its outputs */
} segment;

struct otl_placed {
    const otl_plan *plan;
    segment *segs;
    int n_segs;
    const void **values; /* per value: where its host data is during a run */
};

/* Whether name is one of the comma-separated names in list. */
static bool listed(const char *list, const char *name) {
    const size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && !strncmp(p, name, n)) return true;
        p += n + (end != NULL);
    }
    return false;
}

const char *otl_place_fallback(const otl_plan *plan, int step, const otl_backend *main, const otl_backend_env *env) {
    if (listed(env->fallback_ops, otl_op_name(otl_plan_step(plan, step)->op))) return "ONNXTL_FALLBACK_OPS names its op";
    if (main != &otl_backend_cpu && !main->supports(plan, step)) return "the device's backend does not run it";
    return NULL;
}

void otl_placed_release(otl_placed *pl) {
    if (!pl) return;
    for (int i = 0; i < pl->n_segs; i++) {
        segment *sg = &pl->segs[i];
        if (sg->state) sg->backend->release(sg->state);
        for (int k = 0; sg->out && sg->plan && k < sg->plan->n_outputs; k++) free(sg->out[k]);
        free(sg->out);
        free(sg->in);
        otl_plan_free(sg->plan);
    }
    free(pl->segs);
    free(pl->values);
    free(pl);
}

static onnxtl_status *alloc_segment_io(segment *sg) {
    const otl_plan *p = sg->plan;
    sg->in = calloc((size_t)p->n_inputs + 1, sizeof *sg->in);
    sg->out = calloc((size_t)p->n_outputs + 1, sizeof *sg->out);
    if (!sg->in || !sg->out) return otl_nomem();
    for (int k = 0; k < p->n_outputs; k++) {
        size_t bytes = otl_tinfo_bytes(&p->t[p->outputs[k]]);
        if (!(sg->out[k] = malloc(bytes ? bytes : 1))) return otl_nomem();
    }
    return NULL;
}

/* Steps [first, last) as one segment on backend. */
static onnxtl_status *add_segment(otl_placed *pl, int first, int last, const otl_backend *backend,
                                  const otl_backend_config *cfg) {
    segment *sg = &pl->segs[pl->n_segs++];
    sg->backend = backend;
    OTL_TRY(otl_plan_segment(pl->plan, first, last, &sg->plan));
    OTL_TRY(alloc_segment_io(sg));
    otl_backend_config c = *cfg;
    if (backend == &otl_backend_cpu) c.precision = ONNXTL_PRECISION_FP32;
    return backend->prepare(sg->plan, &c, &sg->state);
}

/* why[i]: why step i runs on the CPU, NULL where it stays on main. */
static void log_placement(const otl_placed *pl, const otl_backend *main, const otl_backend_config *cfg,
                          const char *const *why) {
    int moved = 0;
    for (int i = 0; i < pl->plan->n_steps; i++) {
        if (!why[i]) continue;
        const otl_node *n = otl_plan_step(pl->plan, i);
        otl_log_line(&cfg->log, "node '%s' (%s) runs on the CPU: %s", n->name, otl_op_name(n->op), why[i]);
        moved++;
    }
    otl_log_line(&cfg->log, "%s: %d of %d nodes on the CPU, in %d segments", main->name, moved, pl->plan->n_steps,
                 pl->n_segs);
}

/* Groups runs of steps by where they run. */
static onnxtl_status *place_segments(otl_placed *pl, const otl_backend *main, const otl_backend_config *cfg,
                                     const char *const *why) {
    const otl_plan *p = pl->plan;
    if (!(pl->segs = calloc((size_t)p->n_steps + 1, sizeof *pl->segs))) return otl_nomem();
    if (!(pl->values = calloc((size_t)p->g->n_values + 1, sizeof *pl->values))) return otl_nomem();
    for (int first = 0; first < p->n_steps;) {
        const bool on_cpu = why[first] != NULL;
        int last = first + 1;
        while (last < p->n_steps && (why[last] != NULL) == on_cpu) last++;
        OTL_TRY(add_segment(pl, first, last, on_cpu ? &otl_backend_cpu : main, cfg));
        first = last;
    }
    return NULL;
}

/* Whether some requested output is a graph input or a constant: only the
 * CPU backend hands those back itself. */
static bool outputs_not_computed(const otl_plan *p) {
    for (int i = 0; i < p->n_outputs; i++) {
        bool computed = false;
        for (int s = 0; s < p->n_steps && !computed; s++) {
            const otl_node *n = otl_plan_step(p, s);
            for (int k = 0; k < n->n_out; k++) computed |= n->out[k] == p->outputs[i];
        }
        if (!computed) return true;
    }
    return false;
}

onnxtl_status *otl_place(const otl_plan *plan, const otl_backend *main, const otl_backend_config *cfg,
                         otl_placed **out) {
    otl_placed *pl = calloc(1, sizeof *pl);
    const char **why = calloc((size_t)plan->n_steps + 1, sizeof *why);
    if (!pl || !why) {
        free(pl);
        free(why);
        return otl_nomem();
    }
    pl->plan = plan;
    bool split = main != &otl_backend_cpu && outputs_not_computed(plan);
    for (int i = 0; i < plan->n_steps; i++) split |= (why[i] = otl_place_fallback(plan, i, main, &cfg->env)) != NULL;
    onnxtl_status *st;
    if (!split) { /* one segment: the whole plan, its outputs written straight to the caller's */
        pl->segs = calloc(1, sizeof *pl->segs);
        st = pl->segs ? NULL : otl_nomem();
        if (!st) {
            pl->segs[0].backend = main;
            pl->n_segs = 1;
            st = main->prepare(plan, cfg, &pl->segs[0].state);
        }
    } else {
        st = place_segments(pl, main, cfg, why);
    }
    if (!st && cfg->env.log) log_placement(pl, main, cfg, why);
    free(why);
    if (st) {
        otl_placed_release(pl);
        return st;
    }
    *out = pl;
    return NULL;
}

onnxtl_status *otl_placed_run(otl_placed *pl, const void *const *inputs, void *const *outputs) {
    if (pl->n_segs == 1 && !pl->segs[0].plan) return pl->segs[0].backend->run(pl->segs[0].state, inputs, outputs);
    const otl_plan *p = pl->plan;
    for (int i = 0; i < p->n_inputs; i++) pl->values[p->inputs[i]] = inputs[i];
    for (int i = 0; i < pl->n_segs; i++) {
        segment *sg = &pl->segs[i];
        for (int k = 0; k < sg->plan->n_inputs; k++) sg->in[k] = pl->values[sg->plan->inputs[k]];
        OTL_TRY(sg->backend->run(sg->state, sg->in, sg->out));
        for (int k = 0; k < sg->plan->n_outputs; k++) pl->values[sg->plan->outputs[k]] = sg->out[k];
    }
    for (int i = 0; i < p->n_outputs; i++) {
        const int v = p->outputs[i];
        const void *src = pl->values[v] ? pl->values[v] : p->t[v].data;
        if (src && otl_tinfo_bytes(&p->t[v])) memcpy(outputs[i], src, otl_tinfo_bytes(&p->t[v]));
    }
    return NULL;
}
