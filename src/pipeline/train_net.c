#include "train_net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batches.h"
#include "dataset.h"
#include "export.h"
#include "image_model.h"
#include "model.h"
#include "status.h"
#include "train.h"

/* Tapes for the batch sizes met: the full batch, and one other (the short
 * last batch, or one that lost a bad image), made again when it changes. */
#define MAX_TAPES 2

typedef struct {
    const otl_train_net_options *o;
    onnxtl_model *model;
    otl_preprocess pre;
    otl_image_input input;
    int output;            /* the logits: the model's first output */
    int n_classes;
    otl_dataset *ds;
    otl_trainer *trainer;
    otl_plan *plans[MAX_TAPES];
    otl_tape *tapes[MAX_TAPES];
    int64_t sizes[MAX_TAPES];
    int n_tapes;
    float *dlogits;
    int *labels;
    FILE *log;
    otl_train_net_result *r;
} net_training;

/* The running epoch's sums, for the batch callback. */
typedef struct {
    net_training *t;
    const size_t *samples; /* dataset index per image of the run */
    bool training;
    int epoch;
    double loss;
    size_t seen, correct, skipped;
} epoch_pass;

static onnxtl_status *plan_for(net_training *t, int64_t batch, otl_plan **out) {
    otl_tinfo in = {.dtype = ONNXTL_FLOAT, .rank = 4};
    otl_image_input_dims(&t->input, (size_t)batch, in.dims);
    return otl_model_plan(t->model, &in, batch, &t->output, 1, out);
}

/* Every step must have a gradient, before any image is decoded. */
static onnxtl_status *check_trainable(const otl_plan *p) {
    char why[256];
    for (int i = 0; i < p->n_steps; i++)
        if (!otl_trainer_supports(p, i, why, sizeof why))
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "cannot train %s", why);
    return NULL;
}

static onnxtl_status *tape_for(net_training *t, int64_t batch, otl_tape **out) {
    for (int i = 0; i < t->n_tapes; i++)
        if (t->sizes[i] == batch) return *out = t->tapes[i], NULL;
    if (t->n_tapes == MAX_TAPES) { /* the other size makes room; the full batch stays */
        otl_tape_release(t->tapes[1]);
        otl_plan_free(t->plans[1]);
        t->n_tapes = 1;
    }
    otl_plan *p;
    OTL_TRY(plan_for(t, batch, &p));
    onnxtl_status *st = otl_tape_create(t->trainer, p, &t->tapes[t->n_tapes]);
    if (st) {
        otl_plan_free(p);
        return st;
    }
    t->plans[t->n_tapes] = p;
    t->sizes[t->n_tapes] = batch;
    *out = t->tapes[t->n_tapes++];
    return NULL;
}

static void log_step(net_training *t, int epoch, double loss, double acc) {
    if (t->log)
        fprintf(t->log, "{\"step\": %lld, \"epoch\": %d, \"loss\": %.9g, \"accuracy\": %.6f, \"lr\": %g}\n",
                (long long)t->r->steps, epoch, loss, acc, t->o->trainer.lr);
}

/* A batch's good images, forward; in training also backward and a step. */
static onnxtl_status *on_batch(void *ctx, const otl_batch *b, otl_batch_turn *turn) {
    epoch_pass *e = ctx;
    net_training *t = e->t;
    (void)turn; /* one consumer: batches come in order */
    e->skipped += b->n_bad;
    for (size_t i = 0; e->epoch == 1 && i < b->n_bad; i++) otl_events_note(t->o->events, true, "skipped %s", b->why[i]);
    if (!b->good) return NULL;
    const int n = (int)b->good;
    for (int i = 0; i < n; i++) t->labels[i] = t->ds->samples[e->samples[b->index[i]]].label;
    otl_tape *tape;
    const float *logits;
    OTL_TRY(tape_for(t, n, &tape));
    OTL_TRY(otl_tape_forward(tape, b->pixels, e->training, &logits));
    int correct = 0;
    const double loss = otl_cross_entropy(logits, t->labels, n, t->n_classes, e->training ? t->dlogits : NULL, &correct);
    if (!isfinite(loss))
        return otl_error(ONNXTL_ERR_RUNTIME, "the loss became non-finite at epoch %d; lower --lr", e->epoch);
    e->loss += loss, e->correct += (size_t)correct, e->seen += (size_t)n;
    if (!e->training) return NULL;
    OTL_TRY(otl_tape_backward(tape, t->dlogits));
    otl_trainer_step(t->trainer);
    t->r->steps++;
    log_step(t, e->epoch, loss / n, (double)correct / n);
    return NULL;
}

/* One pass over the samples listed in order: their mean loss and accuracy. */
static onnxtl_status *run_pass(net_training *t, const size_t *order, size_t n, bool training, int epoch,
                               double *loss, double *acc) {
    otl_strlist paths = {0};
    epoch_pass e = {t, order, training, epoch, 0, 0, 0, 0};
    onnxtl_status *st = otl_dataset_paths(t->ds, order, n, &paths);
    otl_batch_source src = {(const char *const *)paths.items, n, &t->pre, t->input.height, t->input.width,
                            t->input.nhwc, t->o->batch, t->o->decoders, 0, 1, NULL};
    void *ctxs[1] = {&e};
    if (!st && n) st = otl_batches_run(&src, on_batch, ctxs);
    otl_strlist_free(&paths);
    if (epoch == 1) t->r->skipped += e.skipped;
    *loss = e.seen ? e.loss / (double)e.seen : -1;
    *acc = e.seen ? (double)e.correct / (double)e.seen : -1;
    return st;
}

/* The samples of each split: training ones, and the test (else val) ones. */
typedef struct {
    size_t *train, *eval;
    size_t n_train, n_eval;
} splits;

static onnxtl_status *split_samples(const otl_dataset *ds, splits *s, const char **eval_name) {
    s->train = malloc(sizeof *s->train * (ds->n_samples + 1));
    s->eval = malloc(sizeof *s->eval * (ds->n_samples + 1));
    if (!s->train || !s->eval) return otl_nomem();
    int eval_split = -1;
    for (size_t i = 0; i < ds->n_samples; i++)
        if (ds->samples[i].split == SPLIT_TEST || (ds->samples[i].split == SPLIT_VAL && eval_split < 0))
            eval_split = ds->samples[i].split;
    for (size_t i = 0; i < ds->n_samples; i++) {
        const int sp = ds->samples[i].split;
        if (sp == SPLIT_TRAIN || sp == SPLIT_ALL) s->train[s->n_train++] = i;
        else if (sp == eval_split) s->eval[s->n_eval++] = i;
    }
    *eval_name = eval_split >= 0 ? otl_split_names[eval_split] : NULL;
    return s->n_train ? NULL : otl_error(ONNXTL_ERR_ARG, "%s: no training images (a train/ split or an unsplit "
                                         "folder)", ds->root);
}

/* The model with its trained parameters, in ONNX as its producer wrote it otherwise. */
static onnxtl_status *export_trained(const net_training *t) {
    const size_t n = otl_trainer_param_count(t->trainer);
    const char **names = malloc(sizeof *names * (n + 1));
    const float **data = malloc(sizeof *data * (n + 1));
    size_t *counts = malloc(sizeof *counts * (n + 1));
    onnxtl_status *st = names && data && counts ? NULL : otl_nomem();
    const otl_graph *g = otl_model_graph(t->model);
    for (size_t i = 0; !st && i < n; i++) {
        const otl_value *v = &g->values[otl_trainer_param_value(t->trainer, i)];
        names[i] = v->name, data[i] = otl_trainer_param_data(t->trainer, i);
        counts[i] = (size_t)otl_tinfo_count(&t->plans[0]->t[otl_trainer_param_value(t->trainer, i)]);
    }
    if (!st) st = otl_export_trained(t->o->model_path, names, data, counts, n, t->o->out_path);
    free(names);
    free(data);
    free(counts);
    return st;
}

/* The short last batches' plans, built before any image is decoded: a
 * model whose Reshape fixes the batch fails here, not after an epoch. */
static onnxtl_status *check_batch_sizes(net_training *t, const splits *s) {
    const size_t left[2] = {s->n_train % (size_t)t->o->batch, s->n_eval % (size_t)t->o->batch};
    for (int i = 0; i < 2; i++) {
        otl_plan *p;
        if (!left[i]) continue;
        onnxtl_status *st = plan_for(t, (int64_t)left[i], &p);
        if (st) return otl_error_wrap(st, "%s at batch %zu (the last of the %s images)", t->o->model_path, left[i],
                                      i ? "evaluation" : "training");
        otl_plan_free(p);
    }
    return NULL;
}

static onnxtl_status *run_epochs(net_training *t, splits *s) {
    const otl_train_net_options *o = t->o;
    uint64_t *order = malloc(sizeof *order * (s->n_train + 1));
    size_t *picked = malloc(sizeof *picked * (s->n_train + 1));
    if (!order || !picked) {
        free(order), free(picked);
        return otl_nomem();
    }
    uint64_t rng_state = o->trainer.seed ^ 0x5eed;
    onnxtl_status *st = NULL;
    for (size_t i = 0; i < s->n_train; i++) order[i] = i;
    for (int epoch = 1; epoch <= o->epochs && !st; epoch++) {
        if (o->shuffle) otl_shuffle(order, s->n_train, &rng_state);
        for (size_t i = 0; i < s->n_train; i++) picked[i] = s->train[order[i]];
        otl_epoch_figures f = {epoch, o->epochs, 0, 0, -1, -1, t->r->eval_split};
        st = run_pass(t, picked, s->n_train, true, epoch, &f.train_loss, &f.train_acc);
        if (!st && f.train_loss < 0)
            st = otl_error(ONNXTL_ERR_FORMAT, "%s: none of the %zu training images could be read", t->ds->root, s->n_train);
        if (!st && s->n_eval) st = run_pass(t, s->eval, s->n_eval, false, epoch, &f.eval_loss, &f.eval_acc);
        if (st) break;
        otl_events_epoch(o->events, &f);
        if (t->log) otl_train_log_epoch(t->log, &f);
        t->r->epochs = epoch;
        t->r->train_loss = f.train_loss, t->r->train_acc = f.train_acc;
        t->r->eval_loss = f.eval_loss, t->r->eval_acc = f.eval_acc;
        /* written after every epoch, atomically: an error later loses no finished epoch */
        if (o->out_path) st = export_trained(t);
    }
    free(order);
    free(picked);
    return st;
}

/* The model, its preprocessing, its logits' width against the classes, and its parameters. */
static onnxtl_status *prepare(net_training *t) {
    const otl_train_net_options *o = t->o;
    OTL_TRY(otl_model_load_as_written(o->model_path, &t->model));
    char why[256];
    otl_preprocess_default(&t->pre);
    otl_image_model_defaults(t->model, &t->pre, why, sizeof why);
    OTL_TRY(otl_preprocess_parse(&t->pre, &o->pre));
    OTL_TRY(otl_image_model_input(t->model, &t->pre, &t->input));
    const otl_graph *g = otl_model_graph(t->model);
    t->output = g->outputs[0];
    OTL_TRY(otl_dataset_scan(o->data_dir, &t->ds));
    t->n_classes = t->ds->n_classes;
    otl_plan *p;
    OTL_TRY(plan_for(t, o->batch, &p));
    const otl_tinfo *y = &p->t[t->output];
    onnxtl_status *st = NULL;
    if (y->rank != 2 || y->dims[1] != t->n_classes)
        st = otl_error(ONNXTL_ERR_ARG, "%s: output '%s' is not N x %d logits for the %d classes of %s (train keeps "
                       "the model's own last layer: it must have one output per class)", o->model_path,
                       g->values[t->output].name, t->n_classes, t->n_classes, o->data_dir);
    if (!st && (st = check_trainable(p))) st = otl_error_wrap(st, "%s", o->model_path);
    if (!st && (st = otl_trainer_create(p, &o->trainer, &t->trainer))) st = otl_error_wrap(st, "%s", o->model_path);
    if (!st) st = otl_tape_create(t->trainer, p, &t->tapes[0]);
    if (st) {
        otl_plan_free(p);
        return st;
    }
    t->plans[0] = p, t->sizes[0] = o->batch, t->n_tapes = 1;
    char pre[256];
    otl_preprocess_describe(&t->pre, pre, sizeof pre);
    otl_events_note(o->events, false, "preprocess: %s%s%s%s", pre, *why ? " (" : "", why, *why ? ")" : "");
    t->dlogits = malloc(sizeof(float) * (size_t)o->batch * (size_t)t->n_classes);
    t->labels = malloc(sizeof(int) * (size_t)o->batch);
    return t->dlogits && t->labels ? NULL : otl_nomem();
}

static void release(net_training *t) {
    for (int i = 0; i < t->n_tapes; i++) otl_tape_release(t->tapes[i]), otl_plan_free(t->plans[i]);
    otl_trainer_release(t->trainer);
    otl_dataset_free(t->ds);
    onnxtl_model_release(t->model);
    free(t->dlogits);
    free(t->labels);
}

onnxtl_status *otl_train_net(const otl_train_net_options *o, otl_train_net_result *r) {
    memset(r, 0, sizeof *r);
    if (o->batch < 1 || o->epochs < 1 || !(o->trainer.lr > 0) || o->decoders < 1)
        return otl_error(ONNXTL_ERR_ARG, "bad training options (batch, epochs, decoders, lr > 0)");
    net_training t = {.o = o, .r = r};
    splits s = {0};
    const double start = otl_now();
    onnxtl_status *st = prepare(&t);
    if (!st) st = split_samples(t.ds, &s, &r->eval_split);
    if (!st) st = check_batch_sizes(&t, &s);
    if (!st) st = otl_train_log_open(o->log, &t.log);
    if (!st) {
        r->train_images = s.n_train, r->eval_images = s.n_eval;
        r->params = (int64_t)otl_trainer_param_count(t.trainer);
        otl_events_note(o->events, false, "training %zu parameter tensors on %zu images, evaluating on %zu",
                        otl_trainer_param_count(t.trainer), s.n_train, s.n_eval);
        st = run_epochs(&t, &s);
    }
    st = otl_train_log_close(t.log, o->log, st);
    r->seconds = otl_now() - start;
    free(s.train);
    free(s.eval);
    release(&t);
    return st;
}
