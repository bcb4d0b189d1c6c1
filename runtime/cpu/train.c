/* The CPU trainer (runtime/trainer.h): forward kernels from the backend's
 * table on ONNX-order buffers, one gradient kernel per op that has one. */
#include "trainer.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "cpu_kernels.h"
#include "dnnl_check.h"
#include "dnnl_conv_train.h"
#include "dnnl_pool_train.h"
#include "dropout.h"
#include "optim.h"

struct otl_trainer {
    otl_trainer_config c;
    int *slot;         /* per value: its parameter, or -1 */
    int *param_value;  /* per parameter */
    size_t *offset;    /* per parameter, into the blocks below; [n_params] is their size */
    size_t n_params;
    size_t head_offset; /* where the head's group starts in the blocks below */
    int *stat_slot, *stat_value; /* bn_train: per value its running statistic or -1; per statistic its value */
    size_t *stat_offset, n_stats;
    float *stats;
    double lr_scale;
    float *params, *grads, *m, *v;
    int64_t steps, forwards;
};

/* The oneDNN training primitives a step runs on: a Conv's, a pool's, or neither. */
typedef struct {
    otl_train_conv *conv;
    otl_train_pool *pool;
} dnnl_step;

struct otl_tape {
    otl_trainer *t;
    const otl_plan *plan;
    void **act;      /* per value: its buffer (a constant's data, a parameter's slot) */
    float **grad;    /* per value: its gradient, for activations */
    uint8_t **keep;  /* per step: a training Dropout's mask */
    double **saved;  /* per step: a train-mode BatchNormalization's batch mean and 1 / std */
    dnnl_step *dnnl; /* per step: the oneDNN training primitives it runs on, if any */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    float *workspace;
    void *buffers;   /* one allocation behind act and grad */
    bool trained;    /* the last forward was a training one */
};

/* The inputs and outputs a trained step may have (every op with a gradient has at most five). */
#define MAX_STEP_IO 8

/* The gradient of each op the trainer differentiates; NULL: it passes the
 * gradient through unchanged (a copy of its input's data). */
typedef onnxtl_status *(*grad_fn)(const otl_grad_args *a);
typedef struct {
    bool has;
    grad_fn fn;
} op_grad;

static const op_grad grads_of[OP_COUNT] = {
    [OP_CONV] = {true, otl_cpu_conv_backward},   [OP_GEMM] = {true, otl_cpu_gemm_backward},
    [OP_RELU] = {true, otl_cpu_relu_backward},   [OP_MAXPOOL] = {true, otl_cpu_maxpool_backward},
    [OP_FLATTEN] = {true, NULL},                 [OP_RESHAPE] = {true, NULL},
    [OP_IDENTITY] = {true, NULL},                [OP_DROPOUT] = {true, NULL},
    [OP_BATCHNORM] = {true, otl_cpu_batchnorm_backward}, [OP_ADD] = {true, otl_cpu_add_backward},
    [OP_GLOBALAVGPOOL] = {true, otl_cpu_global_avgpool_backward}, [OP_AVGPOOL] = {true, otl_cpu_avgpool_backward},
};

/* A node without a name is named by its output. */
static const char *node_name(const otl_plan *plan, const otl_node *n) {
    return *n->name || n->n_out < 1 || n->out[0] < 0 ? n->name : plan->g->values[n->out[0]].name;
}

/* Dropout's ratio: its attribute before opset 12, its input after (0.5 when
 * absent); -1 when it is not a constant float scalar in [0, 1). */
static float dropout_ratio(const otl_plan *plan, const otl_node *n) {
    float ratio = n->attrs.ratio;
    if (n->opset >= 12) {
        const otl_tinfo *r = n->n_in > 1 && n->in[1] >= 0 ? &plan->t[n->in[1]] : NULL;
        if (r && (!r->data || r->dtype != ONNXTL_FLOAT || otl_tinfo_count(r) != 1)) return -1;
        ratio = r ? *(const float *)r->data : 0.5f;
    }
    return ratio >= 0.0f && ratio < 1.0f ? ratio : -1;
}


bool otl_trainer_supports(const otl_plan *plan, int step, char *why, size_t why_n) {
    const otl_node *n = otl_plan_step(plan, step);
    const otl_tinfo *t = plan->t;
    const char *lacks = NULL;
    if (n->op >= OP_COUNT || !grads_of[n->op].has) lacks = "no gradient for this op yet";
    else if (n->n_in > MAX_STEP_IO || n->n_out > MAX_STEP_IO) lacks = "too many inputs or outputs";
    else if (t[n->out[0]].dtype != ONNXTL_FLOAT) lacks = "its output is not float";
    else if (n->op == OP_GEMM && n->attrs.trans_a) lacks = "Gemm with transA=1";
    else if (n->op == OP_MAXPOOL && n->n_out > 1 && n->out[1] >= 0) lacks = "MaxPool with an Indices output";
    else if (n->op == OP_DROPOUT && dropout_ratio(plan, n) < 0) lacks = "its ratio is not a constant in [0, 1)";
    else if (n->op == OP_BATCHNORM && n->attrs.training_mode) lacks = "BatchNormalization in training mode";
    else if (n->op == OP_BATCHNORM && (!t[n->in[3]].data || !t[n->in[4]].data))
        lacks = "BatchNormalization statistics that are not constants";
    if (lacks) snprintf(why, why_n, "%s node '%s': %s", otl_op_name(n->op), node_name(plan, n), lacks);
    return !lacks;
}

/* The inputs a step trains: a Conv's weights and bias, a Gemm's B and C, a
 * BatchNormalization's scale and shift (its statistics stay frozen). */
static bool trains_input(const otl_node *n, int k) {
    return (n->op == OP_CONV || n->op == OP_GEMM || n->op == OP_BATCHNORM) && (k == 1 || k == 2);
}

/* A parameter is written back into the file's initializer of its name, and
 * every node that reads it must be one whose gradient reaches it: a node the
 * plan folded from it (a Transpose of a weight) would keep the old value. */
static onnxtl_status *check_param(const otl_plan *plan, int v) {
    const otl_graph *g = plan->g;
    const char *name = g->values[v].name;
    if (!g->values[v].initializer)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "cannot train '%s': only initializers are trained, and it is a "
                         "Constant node's output or computed from constants", name);
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in && !n->removed; k++) {
            if (n->in[k] != v || trains_input(n, k)) continue;
            if (n->op == OP_BATCHNORM)
                return otl_error(ONNXTL_ERR_UNSUPPORTED, "cannot train '%s': it is also the running %s of "
                                 "BatchNormalization node '%s' (an exporter merged initializers of equal values, as "
                                 "a fresh BatchNorm's weight and running variance are)", name,
                                 k == 3 ? "mean" : "variance", node_name(plan, n));
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "cannot train '%s': %s node '%s' reads it too, and its "
                             "gradient would not reach it", name, otl_op_name(n->op), node_name(plan, n));
        }
    }
    return NULL;
}

static onnxtl_status *find_params(otl_trainer *t, const otl_plan *plan) {
    const int n_values = plan->g->n_values;
    t->slot = malloc(sizeof *t->slot * ((size_t)n_values + 1));
    t->param_value = malloc(sizeof *t->param_value * ((size_t)n_values + 1));
    t->offset = malloc(sizeof *t->offset * ((size_t)n_values + 2));
    if (!t->slot || !t->param_value || !t->offset) return otl_nomem();
    for (int v = 0; v < n_values; v++) t->slot[v] = -1;
    t->offset[0] = 0;
    for (int i = 0; i < plan->n_steps; i++) {
        const otl_node *n = otl_plan_step(plan, i);
        for (int k = 0; k < n->n_in; k++) {
            const int v = n->in[k];
            if (v < 0 || !trains_input(n, k) || !plan->t[v].data || plan->t[v].dtype != ONNXTL_FLOAT || t->slot[v] >= 0)
                continue;
            OTL_TRY(check_param(plan, v));
            t->slot[v] = (int)t->n_params;
            t->param_value[t->n_params] = v;
            if (!otl_add_size(t->offset[t->n_params], (size_t)otl_tinfo_count(&plan->t[v]), &t->offset[t->n_params + 1]))
                return otl_error(ONNXTL_ERR_MODEL, "the parameters do not fit in memory");
            t->n_params++;
            if (i < t->c.head_step) t->head_offset = t->offset[t->n_params];
        }
    }
    return NULL;
}

/* A running statistic is written back into its float initializer, and its
 * BatchNormalization node alone may read it: two that shared it would move
 * one tensor twice a step. */
static onnxtl_status *check_stat(const otl_plan *plan, int v) {
    const otl_graph *g = plan->g;
    const char *name = g->values[v].name;
    if (!g->values[v].initializer || plan->t[v].dtype != ONNXTL_FLOAT)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "cannot update the statistics '%s': they are not a float initializer",
                         name);
    int readers = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in && !n->removed; k++) readers += n->in[k] == v;
    }
    if (readers > 1)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "cannot update the statistics '%s' in train mode: %d inputs read "
                         "them (an exporter merged initializers of equal values, as fresh BatchNorms' zero means)",
                         name, readers);
    return NULL;
}

/* bn_train: BatchNormalization's running mean and variance, in one block. */
static onnxtl_status *find_stats(otl_trainer *t, const otl_plan *plan) {
    const int n_values = plan->g->n_values;
    t->stat_slot = malloc(sizeof *t->stat_slot * ((size_t)n_values + 1));
    t->stat_value = malloc(sizeof *t->stat_value * ((size_t)n_values + 1));
    t->stat_offset = malloc(sizeof *t->stat_offset * ((size_t)n_values + 2));
    if (!t->stat_slot || !t->stat_value || !t->stat_offset) return otl_nomem();
    for (int v = 0; v < n_values; v++) t->stat_slot[v] = -1;
    t->stat_offset[0] = 0;
    for (int i = 0; t->c.bn_train && i < plan->n_steps; i++) {
        const otl_node *n = otl_plan_step(plan, i);
        for (int k = 3; n->op == OP_BATCHNORM && k <= 4; k++) {
            const int v = n->in[k];
            if (t->stat_slot[v] >= 0) continue;
            OTL_TRY(check_stat(plan, v));
            t->stat_slot[v] = (int)t->n_stats;
            t->stat_value[t->n_stats] = v;
            t->stat_offset[t->n_stats + 1] = t->stat_offset[t->n_stats] + (size_t)otl_tinfo_count(&plan->t[v]);
            t->n_stats++;
        }
    }
    if (!(t->stats = malloc((t->stat_offset[t->n_stats] + 1) * sizeof(float)))) return otl_nomem();
    for (size_t i = 0; i < t->n_stats; i++)
        memcpy(t->stats + t->stat_offset[i], plan->t[t->stat_value[i]].data, otl_tinfo_bytes(&plan->t[t->stat_value[i]]));
    return NULL;
}

static onnxtl_status *alloc_blocks(otl_trainer *t, const otl_plan *plan) {
    const size_t n = t->offset[t->n_params] + 1;
    t->params = malloc(n * sizeof(float));
    t->grads = calloc(n, sizeof(float));
    t->m = calloc(n, sizeof(float));
    const bool adam = t->c.optim != OTL_OPTIM_SGD;
    t->v = adam ? calloc(n, sizeof(float)) : NULL;
    if (!t->params || !t->grads || !t->m || (adam && !t->v))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu parameters with their gradients and moments", n - 1);
    for (size_t i = 0; i < t->n_params; i++)
        memcpy(t->params + t->offset[i], plan->t[t->param_value[i]].data, otl_tinfo_bytes(&plan->t[t->param_value[i]]));
    return NULL;
}

onnxtl_status *otl_trainer_create(const otl_plan *plan, const otl_trainer_config *c, otl_trainer **out) {
    otl_trainer *t = calloc(1, sizeof *t);
    if (!t) return otl_nomem();
    t->c = *c;
    t->lr_scale = 1.0;
    onnxtl_status *st = find_params(t, plan);
    if (!st && !t->n_params) st = otl_error(ONNXTL_ERR_MODEL, "no Conv or Gemm parameters to train");
    if (!st) st = alloc_blocks(t, plan);
    if (!st) st = find_stats(t, plan);
    if (st) {
        otl_trainer_release(t);
        return st;
    }
    *out = t;
    return NULL;
}

size_t otl_trainer_param_count(const otl_trainer *t) { return t->n_params; }
int otl_trainer_param_value(const otl_trainer *t, size_t i) { return t->param_value[i]; }
const float *otl_trainer_param_data(const otl_trainer *t, size_t i) { return t->params + t->offset[i]; }
size_t otl_trainer_stat_count(const otl_trainer *t) { return t->n_stats; }
int otl_trainer_stat_value(const otl_trainer *t, size_t i) { return t->stat_value[i]; }
const float *otl_trainer_stat_data(const otl_trainer *t, size_t i) { return t->stats + t->stat_offset[i]; }

static void use_threads(const otl_trainer *t) {
    omp_set_num_threads(t->c.threads > 0 ? t->c.threads : omp_get_num_procs());
}

void otl_trainer_state_of(otl_trainer *t, otl_trainer_state *s) {
    *s = (otl_trainer_state){t->params, t->m, t->v, t->offset[t->n_params], t->stats, t->stat_offset[t->n_stats],
                             t->steps, t->forwards};
}

void otl_trainer_restore_counters(otl_trainer *t, int64_t steps, int64_t forwards) {
    t->steps = steps;
    t->forwards = forwards;
}

void otl_trainer_set_lr_scale(otl_trainer *t, double scale) { t->lr_scale = scale; }

/* The update of parameters [first, end) of the blocks at learning rate lr. */
static void update_group(otl_trainer *t, size_t first, size_t end, float lr) {
    const otl_trainer_config *c = &t->c;
    float *p = t->params + first, *m = t->m + first, *v = t->v ? t->v + first : NULL;
    const float *g = t->grads + first;
    if (c->optim == OTL_OPTIM_SGD) otl_sgd_update(lr, c->momentum, c->weight_decay, t->steps == 1, p, g, m, end - first);
    else otl_adam_update(lr, c->weight_decay, c->optim == OTL_OPTIM_ADAMW, t->steps, p, g, m, v, end - first);
}

void otl_trainer_step(otl_trainer *t) {
    const size_t n = t->offset[t->n_params];
    const float lr_backbone = t->c.lr_backbone > 0 ? t->c.lr_backbone : t->c.lr;
    t->steps++;
    use_threads(t);
    if (t->head_offset) update_group(t, 0, t->head_offset, (float)(lr_backbone * t->lr_scale));
    if (t->head_offset < n) update_group(t, t->head_offset, n, (float)(t->c.lr * t->lr_scale));
    memset(t->grads, 0, n * sizeof(float));
}

void otl_trainer_release(otl_trainer *t) {
    if (!t) return;
    free(t->slot);
    free(t->param_value);
    free(t->offset);
    free(t->params);
    free(t->grads);
    free(t->m);
    free(t->v);
    free(t->stat_slot);
    free(t->stat_value);
    free(t->stat_offset);
    free(t->stats);
    free(t);
}

/* The values the plan's steps compute, which get buffers of the tape's: not
 * constants or parameters, nor the network's input (the caller's batch),
 * nor, in a plan of a network's last layers, what its frozen part computes. */
static bool *computed_values(const otl_plan *p) {
    bool *computed = calloc((size_t)p->g->n_values + 1, sizeof *computed);
    for (int i = 0; computed && i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0 && !p->t[n->out[k]].data && p->t[n->out[k]].rank >= 0) computed[n->out[k]] = true;
    }
    return computed;
}

/* Activations and the gradients of the float ones, every one kept for the
 * backward pass, in one allocation: sized on a first walk, carved on a second. */
static onnxtl_status *alloc_tape(otl_tape *tp) {
    const otl_plan *p = tp->plan;
    const int nv = p->g->n_values;
    bool *computed = computed_values(p);
    if (!computed) return otl_nomem();
    for (int pass = 0; pass < 2; pass++) {
        size_t at = 0;
        for (int v = 0; v < nv; v++) {
            if (!computed[v]) continue;
            const size_t bytes = otl_tinfo_bytes(&p->t[v]), padded = (bytes + 63) & ~(size_t)63;
            const bool grad = p->t[v].dtype == ONNXTL_FLOAT;
            if (pass) {
                tp->act[v] = (char *)tp->buffers + at;
                if (grad) tp->grad[v] = (float *)((char *)tp->buffers + at + padded);
            }
            if (padded < bytes || !otl_add_size(at, grad ? 2 * padded : padded, &at) || (grad && padded > SIZE_MAX / 2)) {
                free(computed);
                return otl_error(ONNXTL_ERR_NOMEM, "the training activations do not fit in memory");
            }
        }
        if (!pass && !(tp->buffers = aligned_alloc(64, at + 64))) {
            free(computed);
            return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes of training activations; try a smaller batch",
                             at);
        }
    }
    free(computed);
    return NULL;
}

/* Constants and parameters are read where they live. */
static void point_at_constants(otl_tape *tp) {
    const otl_plan *p = tp->plan;
    for (int v = 0; v < p->g->n_values; v++) {
        if (tp->t->slot[v] >= 0) tp->act[v] = tp->t->params + tp->t->offset[tp->t->slot[v]];
        else if (tp->t->stat_slot[v] >= 0) tp->act[v] = tp->t->stats + tp->t->stat_offset[tp->t->stat_slot[v]];
        else if (p->t[v].data) tp->act[v] = (void *)p->t[v].data; /* constants are only read */
    }
}

/* oneDNN's engine and stream, made for the first Conv that needs them. */
static onnxtl_status *ensure_engine(otl_tape *tp) {
    if (tp->engine) return NULL;
    DNNL_TRY(dnnl_engine_create(&tp->engine, dnnl_cpu, 0), "engine");
    DNNL_TRY(dnnl_stream_create(&tp->stream, tp->engine, dnnl_stream_default_flags), "stream");
    return NULL;
}

/* The Convs and pools oneDNN's training primitives take, and one workspace for
 * whichever step runs: theirs or the other kernels'. */
static onnxtl_status *make_kernels(otl_tape *tp) {
    const otl_plan *p = tp->plan;
    size_t bytes = 0;
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        size_t b;
        if (otl_train_conv_supported(n, p->t)) {
            OTL_TRY(ensure_engine(tp));
            OTL_TRY(otl_train_conv_create(tp->engine, n, p->t, &tp->dnnl[i].conv));
            b = otl_train_conv_scratch_bytes(tp->dnnl[i].conv);
        } else if (otl_train_pool_supported(n, p->t)) {
            OTL_TRY(ensure_engine(tp));
            OTL_TRY(otl_train_pool_create(tp->engine, n, p->t, &tp->dnnl[i].pool));
            b = otl_train_pool_scratch_bytes(tp->dnnl[i].pool);
        } else {
            const size_t w = otl_cpu_workspace_floats(n, p->t), bw = otl_cpu_backward_workspace_floats(n, p->t);
            b = (w > bw ? w : bw) * sizeof(float);
        }
        bytes = b > bytes ? b : bytes;
    }
    if (!(tp->workspace = aligned_alloc(64, ((bytes + 63) & ~(size_t)63) + 64)))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes of training workspace; try a smaller batch", bytes);
    return NULL;
}

onnxtl_status *otl_tape_create(otl_trainer *t, const otl_plan *plan, otl_tape **out) {
    otl_tape *tp = calloc(1, sizeof *tp);
    if (!tp) return otl_nomem();
    tp->t = t;
    tp->plan = plan;
    const size_t nv = (size_t)plan->g->n_values + 1;
    tp->act = calloc(nv, sizeof *tp->act);
    tp->grad = calloc(nv, sizeof *tp->grad);
    tp->keep = calloc((size_t)plan->n_steps + 1, sizeof *tp->keep);
    tp->saved = calloc((size_t)plan->n_steps + 1, sizeof *tp->saved);
    tp->dnnl = calloc((size_t)plan->n_steps + 1, sizeof *tp->dnnl);
    onnxtl_status *st = tp->act && tp->grad && tp->keep && tp->saved && tp->dnnl ? NULL : otl_nomem();
    if (!st && plan->n_inputs != 1) st = otl_error(ONNXTL_ERR_MODEL, "training needs a model with one input");
    if (!st) st = alloc_tape(tp);
    if (!st) point_at_constants(tp);
    if (!st) st = make_kernels(tp);
    if (st) {
        otl_tape_release(tp);
        return st;
    }
    *out = tp;
    return NULL;
}

void otl_tape_release(otl_tape *tp) {
    if (!tp) return;
    for (int i = 0; tp->keep && i < tp->plan->n_steps; i++) free(tp->keep[i]);
    for (int i = 0; tp->saved && i < tp->plan->n_steps; i++) free(tp->saved[i]);
    for (int i = 0; tp->dnnl && i < tp->plan->n_steps; i++) {
        otl_train_conv_release(tp->dnnl[i].conv);
        otl_train_pool_release(tp->dnnl[i].pool);
    }
    if (tp->stream) dnnl_stream_destroy(tp->stream);
    if (tp->engine) dnnl_engine_destroy(tp->engine);
    free(tp->dnnl);
    free(tp->keep);
    free(tp->saved);
    free(tp->act);
    free(tp->grad);
    free(tp->workspace);
    free(tp->buffers);
    free(tp);
}

/* Inverted dropout as torch applies it: an element is kept with probability
 * 1 - ratio and then scaled by 1 / (1 - ratio), drawn as dropout.h draws. */
static onnxtl_status *dropout_forward(otl_tape *tp, int step, const otl_node *n, const float *x, float *y) {
    const int64_t count = otl_tinfo_count(&tp->plan->t[n->out[0]]);
    const float ratio = dropout_ratio(tp->plan, n), scale = otl_dropout_scale(ratio);
    if (!tp->keep[step] && !(tp->keep[step] = malloc((size_t)count + 1))) return otl_nomem();
    uint8_t *keep = tp->keep[step];
    const uint64_t key = otl_dropout_key(tp->t->c.seed, (uint64_t)tp->t->forwards, (uint64_t)step);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        keep[i] = otl_dropout_keeps(key, (uint64_t)i, ratio);
        y[i] = keep[i] ? x[i] * scale : 0.0f;
    }
    return NULL;
}

/* torch's train mode: the batch's statistics, kept for the backward pass,
 * and the running ones (the tape's inputs 3 and 4: the trainer's block) moved. */
static onnxtl_status *batchnorm_train(otl_tape *tp, int step, const otl_kernel_args *a) {
    const otl_tinfo *x = &tp->plan->t[a->n->in[0]];
    const int64_t c = x->dims[1], per_channel = otl_tinfo_count(x) / (c ? c : 1);
    if (per_channel < 2)
        return otl_error(ONNXTL_ERR_ARG, "BatchNormalization in train mode (--bn train) needs more than one value per "
                         "channel, and a batch of %lld has one", (long long)x->dims[0]);
    if (!tp->saved[step] && !(tp->saved[step] = malloc(sizeof(double) * 2 * (size_t)c))) return otl_nomem();
    otl_cpu_batchnorm_train_forward(a, (float *)a->in[3], (float *)a->in[4], tp->saved[step]);
    return NULL;
}

/* A step's input and output buffers (NULL for omitted ones); otl_trainer_supports bounds their number. */
static void node_buffers(const otl_tape *tp, const otl_node *n, const void **in, void **out) {
    for (int k = 0; k < n->n_in; k++) in[k] = n->in[k] >= 0 ? tp->act[n->in[k]] : NULL;
    for (int k = 0; k < n->n_out; k++) out[k] = n->out[k] >= 0 ? tp->act[n->out[k]] : NULL;
}

static onnxtl_status *run_forward(otl_tape *tp, int i, bool training) {
    const otl_plan *p = tp->plan;
    const otl_node *n = otl_plan_step(p, i);
    const void *in[MAX_STEP_IO] = {0};
    void *out[MAX_STEP_IO] = {0};
    node_buffers(tp, n, in, out);
    /* Dropout follows the trainer, whatever the model's training_mode input says */
    if (n->op == OP_DROPOUT) {
        const size_t count = (size_t)otl_tinfo_count(&p->t[n->out[0]]);
        if (training && tp->t->c.dropout) OTL_TRY(dropout_forward(tp, i, n, in[0], out[0]));
        else { /* a pass that does not drop forgets the last mask */
            free(tp->keep[i]);
            tp->keep[i] = NULL;
            memcpy(out[0], in[0], count * sizeof(float));
        }
        if (n->n_out > 1 && out[1]) { /* the optional mask output, bool */
            if (tp->keep[i]) memcpy(out[1], tp->keep[i], count);
            else memset(out[1], 1, count);
        }
        return NULL;
    }
    otl_kernel_args a = {n, p->t, in, out, tp->workspace, false};
    if (n->op == OP_BATCHNORM && training && tp->t->c.bn_train) return batchnorm_train(tp, i, &a);
    if (tp->dnnl[i].conv) return otl_train_conv_forward(tp->dnnl[i].conv, tp->stream, &a);
    if (tp->dnnl[i].pool) return otl_train_pool_forward(tp->dnnl[i].pool, tp->stream, &a);
    return otl_cpu_run_kernel(&a);
}

onnxtl_status *otl_tape_forward(otl_tape *tp, const float *x, bool training, const float **out) {
    const otl_plan *p = tp->plan;
    use_threads(tp->t);
    tp->act[p->inputs[0]] = (void *)x;
    if (training) tp->t->forwards++;
    for (int i = 0; i < p->n_steps; i++) {
        onnxtl_status *st = run_forward(tp, i, training);
        if (st) return otl_error_wrap(st, "node '%s'", node_name(p, otl_plan_step(p, i)));
    }
    tp->trained = training;
    *out = tp->act[p->outputs[0]];
    return NULL;
}

/* Where input k's gradient goes: a parameter's slot, an activation's
 * buffer, or nowhere (a constant, or the network's input). */
static float *gradient_of(const otl_tape *tp, int v) {
    if (v < 0) return NULL;
    if (tp->t->slot[v] >= 0) return tp->t->grads + tp->t->offset[tp->t->slot[v]];
    if (tp->plan->t[v].data || v == tp->plan->inputs[0]) return NULL;
    return tp->grad[v];
}

static void pass_through(const otl_tape *tp, int i, const otl_node *n, const float *dy, float *dx) {
    const int64_t count = otl_tinfo_count(&tp->plan->t[n->out[0]]);
    const uint8_t *keep = n->op == OP_DROPOUT ? tp->keep[i] : NULL;
    const float scale = keep ? otl_dropout_scale(dropout_ratio(tp->plan, n)) : 1.0f;
#pragma omp parallel for simd schedule(static)
    for (int64_t k = 0; k < count; k++) dx[k] += keep ? (keep[k] ? dy[k] * scale : 0.0f) : dy[k];
}

static onnxtl_status *run_backward(otl_tape *tp, int i) {
    const otl_plan *p = tp->plan;
    const otl_node *n = otl_plan_step(p, i);
    const void *in[MAX_STEP_IO] = {0};
    void *out[MAX_STEP_IO] = {0};
    const float *dout[MAX_STEP_IO] = {0};
    float *din[MAX_STEP_IO] = {0};
    node_buffers(tp, n, in, out);
    for (int k = 0; k < n->n_in; k++) din[k] = gradient_of(tp, n->in[k]);
    dout[0] = tp->grad[n->out[0]];
    if (!grads_of[n->op].fn) {
        if (din[0]) pass_through(tp, i, n, dout[0], din[0]);
        return NULL;
    }
    otl_grad_args a = {{n, p->t, in, out, tp->workspace, false}, dout, din};
    if (n->op == OP_BATCHNORM && tp->t->c.bn_train) return otl_cpu_batchnorm_train_backward(&a, tp->saved[i]);
    if (tp->dnnl[i].conv) return otl_train_conv_backward(tp->dnnl[i].conv, tp->stream, &a);
    if (tp->dnnl[i].pool) return otl_train_pool_backward(tp->dnnl[i].pool, tp->stream, &a);
    return grads_of[n->op].fn(&a);
}

onnxtl_status *otl_tape_backward(otl_tape *tp, const float *dout) {
    const otl_plan *p = tp->plan;
    if (!tp->trained) return otl_error(ONNXTL_ERR_ARG, "a backward pass needs a training forward pass before it");
    use_threads(tp->t);
    for (int v = 0; v < p->g->n_values; v++)
        if (tp->grad[v]) memset(tp->grad[v], 0, otl_tinfo_bytes(&p->t[v]));
    const int y = p->outputs[0];
    memcpy(tp->grad[y], dout, otl_tinfo_bytes(&p->t[y]));
    for (int i = p->n_steps - 1; i >= 0; i--) {
        onnxtl_status *st = run_backward(tp, i);
        if (st) return otl_error_wrap(st, "the gradient of node '%s'", node_name(p, otl_plan_step(p, i)));
    }
    return NULL;
}
