#include "train_net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batches.h"
#include "checkpoint.h"
#include "dataset.h"
#include "export.h"
#include "fit_head.h"
#include "hash.h"
#include "image_model.h"
#include "model.h"
#include "status.h"
#include "train.h"

/* Tapes for the batch sizes met: the full batch, and one other (the short
 * last batch, or one that lost a bad image), made again when it changes. */
#define MAX_TAPES 2

/* One batch size's plans and tape. */
typedef struct {
    int64_t size;
    otl_plan *whole; /* the model at this batch size */
    otl_plan *part;  /* its steps downstream of the tensor training starts at (whole itself, from the input) */
    otl_tape *tape;
} sized_tape;

typedef struct {
    const otl_train_net_options *o;
    onnxtl_model *model;
    const char *source;    /* the ONNX file of model: MODEL, or out_path holding MODEL with a new head */
    otl_preprocess pre;
    otl_image_input input;
    int logits;            /* the model's first output, or the input of the Softmax that computes it */
    int from;              /* where training starts: the model's input, or a tensor inside it */
    int n_classes;
    int64_t from_count;    /* values per image of `from` */
    otl_dataset *ds;       /* training on images ... */
    onnxtl_model *frozen_model;
    onnxtl_session *frozen; /* ... where a session computes `from` */
    otl_features *f;       /* training on a features file's rows */
    float *rows;           /* a batch of them */
    otl_trainer *trainer;
    sized_tape tapes[MAX_TAPES];
    int n_tapes;
    float *dlogits;
    int *labels;
    char model_sha256[65]; /* MODEL's SHA-256, once read ("" before) */
    FILE *log;
    int first_epoch; /* the first this run trains (past the resumed ones): it warns of and counts the bad images */
    char *fingerprint, *state_path; /* of the checkpoint */
    otl_train_net_result *r;
} net_training;

/* The running pass's sums. */
typedef struct {
    net_training *t;
    const size_t *samples; /* dataset index per image of an image pass */
    bool training;
    int epoch;
    size_t total;
    double loss;
    size_t seen, correct, skipped;
} epoch_pass;

static bool augmenting(const otl_train_net_options *o) { return o->augment.crop || o->augment.flip; }

static bool new_head(const otl_train_net_options *o) { return o->head && strcmp(o->head, "none"); }

static bool from_input(const net_training *t) { return t->from == otl_model_graph(t->model)->inputs[0]; }

static void release_sized(sized_tape *s) {
    otl_tape_release(s->tape);
    if (s->part != s->whole) otl_plan_free(s->part);
    otl_plan_free(s->whole);
    *s = (sized_tape){0};
}

static onnxtl_status *plans_for(const net_training *t, int64_t batch, sized_tape *s) {
    otl_tinfo in = {.dtype = ONNXTL_FLOAT, .rank = 4};
    otl_image_input_dims(&t->input, (size_t)batch, in.dims);
    *s = (sized_tape){.size = batch};
    OTL_TRY(otl_model_plan(t->model, &in, batch, &t->logits, 1, &s->whole));
    s->part = s->whole;
    if (from_input(t)) return NULL;
    onnxtl_status *st = otl_plan_downstream(s->whole, t->from, &s->part);
    if (st) {
        s->part = s->whole;
        release_sized(s);
        return otl_error_wrap(st, "%s", t->o->model_path);
    }
    return NULL;
}

static onnxtl_status *tape_for(net_training *t, int64_t batch, otl_tape **out) {
    for (int i = 0; i < t->n_tapes; i++)
        if (t->tapes[i].size == batch) return *out = t->tapes[i].tape, NULL;
    if (t->n_tapes == MAX_TAPES) release_sized(&t->tapes[--t->n_tapes]); /* the other size makes room */
    sized_tape *s = &t->tapes[t->n_tapes];
    OTL_TRY(plans_for(t, batch, s));
    onnxtl_status *st = otl_tape_create(t->trainer, s->part, &s->tape);
    if (st) {
        release_sized(s);
        return st;
    }
    t->n_tapes++;
    *out = s->tape;
    return NULL;
}

/* The schedule's factor of the base learning rates in epoch (from 1). */
static double lr_scale(const otl_train_net_options *o, int epoch) {
    const int done = epoch - 1;
    switch (o->schedule) {
    case OTL_SCHEDULE_COSINE: return (1.0 + cos(M_PI * done / o->epochs)) / 2.0;
    case OTL_SCHEDULE_STEP: return pow(o->gamma, done / o->step_size);
    default: return 1.0;
    }
}

static void log_step(net_training *t, int epoch, double loss, double acc) {
    if (t->log)
        fprintf(t->log, "{\"step\": %lld, \"epoch\": %d, \"loss\": %.9g, \"accuracy\": %.6f, \"lr\": %g}\n",
                (long long)t->r->steps, epoch, loss, acc, t->o->trainer.lr * lr_scale(t->o, epoch));
}

/* n inputs of the trained part (t->labels holds their labels): forward; in
 * training also backward and an optimizer step. */
static onnxtl_status *step_batch(epoch_pass *e, const float *x, int n) {
    net_training *t = e->t;
    otl_tape *tape;
    const float *logits;
    OTL_TRY(tape_for(t, n, &tape));
    OTL_TRY(otl_tape_forward(tape, x, e->training, &logits));
    int correct = 0;
    const double loss = otl_cross_entropy(logits, t->labels, n, t->n_classes, e->training ? t->dlogits : NULL, &correct);
    if (!isfinite(loss))
        return otl_error(ONNXTL_ERR_RUNTIME, "the loss became non-finite at epoch %d; lower --lr", e->epoch);
    e->loss += loss, e->correct += (size_t)correct, e->seen += (size_t)n;
    otl_events_progress(t->o->events, e->training ? "train" : "evaluate", "img", e->seen + e->skipped, e->total);
    if (!e->training) return NULL;
    OTL_TRY(otl_tape_backward(tape, t->dlogits));
    otl_trainer_step(t->trainer);
    t->r->steps++;
    log_step(t, e->epoch, loss / n, (double)correct / n);
    return NULL;
}

/* The frozen part on a batch of images: `from` for each, computed by the
 * session at the full batch size (the short batch padded with zeros), as
 * extract computes it, so that a cache extracted at this --batch holds the
 * rows these images give here. */
static onnxtl_status *run_frozen(net_training *t, const otl_batch *b, const float **x) {
    onnxtl_tensor in = {.name = t->input.name, .dtype = ONNXTL_FLOAT, .rank = 4, .data = b->pixels};
    onnxtl_tensor out = {.name = otl_model_graph(t->model)->values[t->from].name};
    otl_image_input_dims(&t->input, (size_t)t->o->batch, in.dims);
    OTL_TRY(onnxtl_session_run(t->frozen, &in, 1, &out, 1));
    int64_t count = 1;
    for (int d = 0; d < out.rank; d++) count *= out.dims[d];
    if (out.dtype != ONNXTL_FLOAT || count != t->from_count * (int64_t)t->o->batch)
        return otl_error(ONNXTL_ERR_MODEL, "%s: '%s' came out of the frozen layers as other than %lld floats per image",
                         t->o->model_path, out.name, (long long)t->from_count);
    *x = out.data;
    return NULL;
}

/* A batch's good images. */
static onnxtl_status *on_images(void *ctx, const otl_batch *b, otl_batch_turn *turn) {
    epoch_pass *e = ctx;
    net_training *t = e->t;
    (void)turn; /* one consumer: batches come in order */
    e->skipped += b->n_bad;
    for (size_t i = 0; e->epoch == t->first_epoch && i < b->n_bad; i++)
        otl_events_note(t->o->events, true, "skipped %s", b->why[i]);
    if (!b->good) return NULL;
    for (size_t i = 0; i < b->good; i++) t->labels[i] = t->ds->samples[e->samples[b->index[i]]].label;
    const float *x = b->pixels;
    if (t->frozen) OTL_TRY(run_frozen(t, b, &x));
    return step_batch(e, x, (int)b->good);
}

static onnxtl_status *image_pass(epoch_pass *e, const size_t *order, size_t n) {
    net_training *t = e->t;
    otl_strlist paths = {0};
    e->samples = order;
    const bool augment = e->training && augmenting(t->o);
    otl_draw_key *draws = augment ? malloc(sizeof *draws * (n + 1)) : NULL;
    onnxtl_status *st = augment && !draws ? otl_nomem() : otl_dataset_paths(t->ds, order, n, &paths);
    for (size_t i = 0; draws && i < n; i++) draws[i] = (otl_draw_key){order[i], (uint32_t)e->epoch};
    otl_batch_source src = {.paths = (const char *const *)paths.items, .n = n, .pre = &t->pre,
                            .height = t->input.height, .width = t->input.width, .hwc = t->input.nhwc,
                            .batch = t->o->batch, .decoders = t->o->decoders, .consumers = 1,
                            .augment = augment ? &t->o->augment : NULL, .draws = draws};
    void *ctxs[1] = {e};
    if (!st && n) st = otl_batches_run(&src, on_images, ctxs);
    otl_strlist_free(&paths);
    free(draws);
    return st;
}

static onnxtl_status *row_pass(epoch_pass *e, const uint64_t *rows, size_t n) {
    net_training *t = e->t;
    const size_t dim = (size_t)t->from_count;
    for (size_t s = 0; s < n; s += (size_t)t->o->batch) {
        const int k = n - s < (size_t)t->o->batch ? (int)(n - s) : t->o->batch;
        for (int i = 0; i < k; i++) {
            otl_features_values(t->f, rows[s + (size_t)i], t->rows + (size_t)i * dim);
            t->labels[i] = otl_features_tag(t->f, rows[s + (size_t)i]).label;
        }
        OTL_TRY(step_batch(e, t->rows, k));
    }
    return NULL;
}

/* The samples of each split, as dataset indices (images) or row indices
 * (features): training ones, and the test (else val) ones; on a cache of
 * extract --views, training images by their first views' rows. */
typedef struct {
    size_t *train, *eval;
    size_t n_train, n_eval;
    int eval_split;
    int views;
} splits;

/* One pass over the samples listed in order: their mean loss and accuracy. */
static onnxtl_status *run_pass(net_training *t, const size_t *order, size_t n, bool training, int epoch,
                               double *loss, double *acc) {
    epoch_pass e = {.t = t, .training = training, .epoch = epoch, .total = n};
    otl_events_progress(t->o->events, training ? "train" : "evaluate", "img", 0, n);
    onnxtl_status *st = t->f ? row_pass(&e, (const uint64_t *)order, n) : image_pass(&e, order, n);
    if (epoch == t->first_epoch) t->r->skipped += e.skipped;
    *loss = e.seen ? e.loss / (double)e.seen : -1;
    *acc = e.seen ? (double)e.correct / (double)e.seen : -1;
    return st;
}

static onnxtl_status *split_images(const otl_dataset *ds, splits *s) {
    s->train = malloc(sizeof *s->train * (ds->n_samples + 1));
    s->eval = malloc(sizeof *s->eval * (ds->n_samples + 1));
    if (!s->train || !s->eval) return otl_nomem();
    s->eval_split = -1;
    s->views = 1;
    for (size_t i = 0; i < ds->n_samples; i++)
        if (ds->samples[i].split == SPLIT_TEST || (ds->samples[i].split == SPLIT_VAL && s->eval_split < 0))
            s->eval_split = ds->samples[i].split;
    for (size_t i = 0; i < ds->n_samples; i++) {
        const int sp = ds->samples[i].split;
        if (sp == SPLIT_TRAIN || sp == SPLIT_ALL) s->train[s->n_train++] = i;
        else if (sp == s->eval_split) s->eval[s->n_eval++] = i;
    }
    return s->n_train ? NULL : otl_error(ONNXTL_ERR_ARG, "%s: no training images (a train/ split or an unsplit "
                                         "folder)", ds->root);
}

/* A features file's rows split as its tags say; row indices stand in for sample indices. */
static onnxtl_status *split_rows(const otl_features *f, splits *s) {
    _Static_assert(sizeof(size_t) == sizeof(uint64_t), "row indices are held as size_t");
    otl_row_splits rs = {0};
    onnxtl_status *st = otl_features_splits(f, &rs);
    *s = (splits){(size_t *)rs.train, (size_t *)rs.eval, rs.n_train, rs.n_eval, rs.n_eval ? rs.eval_split : -1, rs.views};
    return st;
}

/* The model with its trained parameters (and with --bn train its running
 * statistics), in ONNX as its producer wrote it otherwise. */
static onnxtl_status *export_trained(const net_training *t) {
    const otl_trainer *tr = t->trainer;
    const size_t n_params = otl_trainer_param_count(tr), n = n_params + otl_trainer_stat_count(tr);
    const char **names = malloc(sizeof *names * (n + 1));
    const float **data = malloc(sizeof *data * (n + 1));
    size_t *counts = malloc(sizeof *counts * (n + 1));
    onnxtl_status *st = names && data && counts ? NULL : otl_nomem();
    const otl_graph *g = otl_model_graph(t->model);
    for (size_t i = 0; !st && i < n; i++) {
        const bool param = i < n_params;
        const int v = param ? otl_trainer_param_value(tr, i) : otl_trainer_stat_value(tr, i - n_params);
        names[i] = g->values[v].name;
        data[i] = param ? otl_trainer_param_data(tr, i) : otl_trainer_stat_data(tr, i - n_params);
        counts[i] = (size_t)otl_tinfo_count(&t->tapes[0].part->t[v]);
    }
    if (!st) st = otl_export_trained(t->source, names, data, counts, n, t->o->out_path);
    free(names);
    free(data);
    free(counts);
    return st;
}

/* --bn train normalises each channel by its batch: a batch must give it more than one value. */
static onnxtl_status *check_bn_batch(const net_training *t, const otl_plan *p, size_t batch) {
    for (int i = 0; t->o->trainer.bn_train && i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        const otl_tinfo *x = &p->t[n->in[0]];
        if (n->op == OP_BATCHNORM && otl_tinfo_count(x) / (x->dims[1] ? x->dims[1] : 1) < 2)
            return otl_error(ONNXTL_ERR_ARG, "--bn train needs more than one value per channel, and at '%s' the last "
                             "training batch (%zu image(s)) gives one: choose a --batch that leaves more",
                             otl_model_graph(t->model)->values[n->in[0]].name, batch);
    }
    return NULL;
}

/* The short last batches' plans, built before any training: a model whose
 * Reshape fixes the batch fails here, not after an epoch. */
static onnxtl_status *check_batch_sizes(net_training *t, const splits *s) {
    const size_t left[2] = {s->n_train % (size_t)t->o->batch, s->n_eval % (size_t)t->o->batch};
    for (int i = 0; i < 2; i++) {
        sized_tape st_plans;
        if (!left[i]) continue;
        onnxtl_status *st = plans_for(t, (int64_t)left[i], &st_plans);
        if (st) return otl_error_wrap(st, "at batch %zu (the last of the %s samples)", left[i],
                                      i ? "evaluation" : "training");
        if (!i) st = check_bn_batch(t, st_plans.part, left[i]);
        release_sized(&st_plans);
        OTL_TRY(st);
    }
    return NULL;
}

/* MODEL's SHA-256, read once however many checks ask for it. */
static onnxtl_status *model_sha256(net_training *t, const char **sha) {
    if (!t->model_sha256[0]) OTL_TRY(otl_sha256_file(t->o->model_path, t->model_sha256));
    *sha = t->model_sha256;
    return NULL;
}

/* Everything the course of the training depends on, which a resumed run must share. */
static onnxtl_status *make_fingerprint(net_training *t) {
    const otl_train_net_options *o = t->o;
    const otl_trainer_config *c = &o->trainer;
    char pre[256];
    const char *sha;
    OTL_TRY(model_sha256(t, &sha));
    char *data = realpath(o->data, NULL);
    otl_preprocess_describe(&t->pre, pre, sizeof pre);
    /* a cosine schedule spans the epochs; the others let a resumed run train longer */
    const int epochs = o->schedule == OTL_SCHEDULE_COSINE ? o->epochs : 0;
    const int n = asprintf(&t->fingerprint, "model %s\ndata %s\nfrom %s\npreprocess %s\noptim %d\nlr %.9g\nlr-backbone "
                           "%.9g\nmomentum %.9g\nweight-decay %.9g\nschedule %d\nstep-size %d\ngamma %.9g\nepochs %d\n"
                           "batch %d\nseed %llu\nshuffle %d\ndropout %d\nhead %s\nbn %d\naugment %d %d\n", sha, data ? data : o->data,
                           otl_model_graph(t->model)->values[t->from].name, pre, (int)c->optim, c->lr, c->lr_backbone,
                           c->momentum, c->weight_decay, (int)o->schedule, o->step_size, o->gamma, epochs, o->batch,
                           (unsigned long long)c->seed, o->shuffle, c->dropout, new_head(o) ? o->head : "none", c->bn_train, o->augment.crop,
                           o->augment.flip);
    free(data);
    if (n < 0) {
        t->fingerprint = NULL; /* asprintf leaves it undefined */
        return otl_nomem();
    }
    const size_t len = strlen(o->out_path) + 7;
    if (!(t->state_path = malloc(len))) return otl_nomem();
    snprintf(t->state_path, len, "%s.state", o->out_path);
    return NULL;
}

/* The checkpoint of the epoch just finished, beside the model written for it. */
static onnxtl_status *save_checkpoint(net_training *t) {
    otl_trainer_state s;
    otl_trainer_state_of(t->trainer, &s);
    const otl_train_net_result *r = t->r;
    const otl_checkpoint_epoch e = {r->epochs, r->train_loss, r->train_acc, r->eval_loss, r->eval_acc};
    return otl_checkpoint_write(t->state_path, t->fingerprint, &e, &s);
}

/* --resume: the trainer as the checkpoint left it; *first the epoch to go on with. */
static onnxtl_status *resume(net_training *t, int *first) {
    otl_trainer_state s;
    otl_checkpoint_epoch e;
    otl_trainer_state_of(t->trainer, &s);
    OTL_TRY(otl_checkpoint_read(t->state_path, t->fingerprint, &e, &s));
    otl_trainer_restore_counters(t->trainer, s.steps, s.forwards);
    otl_train_net_result *r = t->r;
    r->epochs = e.epoch, r->steps = s.steps;
    r->train_loss = e.train_loss, r->train_acc = e.train_acc, r->eval_loss = e.eval_loss, r->eval_acc = e.eval_acc;
    *first = e.epoch + 1;
    OTL_TRY(otl_train_log_rewind(t->log, t->o->log, e.epoch));
    if (e.epoch >= t->o->epochs)
        otl_events_note(t->o->events, true, "%s already holds %d epochs: nothing left to train (raise --epochs to go "
                        "on)", t->state_path, e.epoch);
    else
        otl_events_note(t->o->events, false, "resuming after epoch %d of %d (%s)", e.epoch, t->o->epochs,
                        t->state_path);
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
    int first = 1;
    onnxtl_status *st = o->resume ? resume(t, &first) : NULL;
    t->first_epoch = first;
    const char *eval_name = s->eval_split >= 0 ? otl_split_names[s->eval_split] : NULL;
    for (size_t i = 0; i < s->n_train; i++) order[i] = i;
    for (int epoch = 1; epoch <= o->epochs && !st; epoch++) {
        if (o->shuffle) otl_shuffle(order, s->n_train, &rng_state);
        if (epoch < first) continue; /* a resumed run replays the orders of the epochs done */
        otl_trainer_set_lr_scale(t->trainer, lr_scale(o, epoch));
        /* on a cache of --views K, the epoch's view of each image (its rows follow the first) */
        for (size_t i = 0; i < s->n_train; i++) picked[i] = s->train[order[i]] + otl_epoch_view(s->views, epoch);
        otl_epoch_figures f = {epoch, o->epochs, 0, 0, -1, -1, eval_name};
        st = run_pass(t, picked, s->n_train, true, epoch, &f.train_loss, &f.train_acc);
        if (!st && f.train_loss < 0)
            st = otl_error(ONNXTL_ERR_FORMAT, "%s: none of the %zu training images could be read", o->data, s->n_train);
        if (!st && s->n_eval) st = run_pass(t, s->eval, s->n_eval, false, epoch, &f.eval_loss, &f.eval_acc);
        if (st) break;
        otl_events_epoch(o->events, &f);
        if (t->log) otl_train_log_epoch(t->log, &f);
        t->r->epochs = epoch;
        t->r->train_loss = f.train_loss, t->r->train_acc = f.train_acc;
        t->r->eval_loss = f.eval_loss, t->r->eval_acc = f.eval_acc;
        /* written after every epoch, atomically: an error later loses no finished epoch */
        if (o->out_path) st = export_trained(t);
        if (!st && o->out_path) st = save_checkpoint(t);
    }
    free(order);
    free(picked);
    return st;
}

/* The logits the loss takes: the model's first output, or the input of the
 * Softmax computing it (a model fit-head wrote ends in one). */
static int logits_of(const otl_graph *g) {
    const int y = g->outputs[0], p = g->values[y].producer;
    return p >= 0 && g->nodes[p].op == OP_SOFTMAX ? g->nodes[p].in[0] : y;
}

/* The tensor training starts at: --from, or the features' cut, or the model's input. */
static onnxtl_status *find_from(net_training *t) {
    const otl_graph *g = otl_model_graph(t->model);
    const char *cut = t->f ? otl_features_meta_of(t->f)->cut : NULL, *from = t->o->from ? t->o->from : cut;
    if (t->f && strcmp(from, cut))
        return otl_error(ONNXTL_ERR_ARG, "%s holds '%s', not '%s': extract it with --cut %s, or train from '%s'",
                         t->o->data, cut, from, from, cut);
    t->from = from ? otl_graph_find(g, from) : g->inputs[0];
    if (t->from < 0) return otl_error(ONNXTL_ERR_ARG, "%s has no tensor '%s'", t->o->model_path, from);
    return NULL;
}

static bool preprocess_given(const otl_preprocess_spec *s) {
    return s->resize || s->crop || s->mean || s->std || s->channels || s->scale;
}

/* A features file: rows of the frozen part's output, computed from this very model. */
static onnxtl_status *open_features(net_training *t) {
    const otl_train_net_options *o = t->o;
    OTL_TRY(otl_features_open(o->data, &t->f));
    OTL_TRY(otl_features_check_finite(t->f));
    const otl_features_meta *m = otl_features_meta_of(t->f);
    const char *sha;
    OTL_TRY(model_sha256(t, &sha));
    if (strcmp(sha, m->model_sha256))
        return otl_error(ONNXTL_ERR_ARG, "%s was extracted from %s (SHA-256 %.12s...), not from %s (%.12s...): the "
                         "layers before the cut must be those of the model trained", o->data, m->model_path,
                         m->model_sha256, o->model_path, sha);
    if (augmenting(o))
        return otl_error(ONNXTL_ERR_ARG, "%s holds the views its extraction made (extract --views K --augment LIST caches "
                         "augmented ones); --augment is for training on images",
                         o->data);
    if (preprocess_given(&o->pre))
        return otl_error(ONNXTL_ERR_ARG, "%s fixes the preprocessing its rows were made with; the preprocessing "
                         "options are for training on images", o->data);
    t->pre = m->pre;
    t->n_classes = m->n_classes;
    return NULL;
}

static onnxtl_status *open_images(net_training *t, char *why, size_t why_n) {
    const otl_train_net_options *o = t->o;
    otl_preprocess_default(&t->pre);
    otl_image_model_defaults(t->model, &t->pre, why, why_n);
    OTL_TRY(otl_preprocess_parse(&t->pre, &o->pre));
    OTL_TRY(otl_dataset_scan(o->data, &t->ds));
    t->n_classes = t->ds->n_classes;
    return NULL;
}

/* Training on images from a tensor inside the model: a session runs the
 * layers before it, optimised as extract runs them. */
static onnxtl_status *open_frozen(net_training *t) {
    onnxtl_options opts = {.threads = t->o->trainer.threads};
    const char *from = otl_model_graph(t->model)->values[t->from].name;
    OTL_TRY(onnxtl_model_load(t->o->model_path, &t->frozen_model));
    if (otl_graph_find(otl_model_graph(t->frozen_model), from) < 0)
        return otl_error(ONNXTL_ERR_ARG, "%s: '%s' is not a tensor of the model the frozen layers run (one that an "
                         "optimisation folded away, or the new head's): train from another", t->o->model_path, from);
    return onnxtl_session_create(t->frozen_model, &opts, &t->frozen);
}

/* MODEL with a new classifier in place of its own, as fit-head's, written
 * to out_path (where each epoch's weights then go) and trained from there. */
static onnxtl_status *write_new_head(net_training *t) {
    const otl_train_net_options *o = t->o;
    const otl_graph *g = otl_model_graph(t->model);
    char why[256];
    const int cut = otl_graph_head_input(g, why, sizeof why);
    if (cut < 0) return otl_error(ONNXTL_ERR_ARG, "%s: no classifier to replace (%s)", o->model_path, why);
    otl_tinfo in = {.dtype = ONNXTL_FLOAT, .rank = 4}, x;
    otl_image_input_dims(&t->input, 1, in.dims);
    OTL_TRY(otl_model_shape(t->model, &in, 1, cut, &x));
    int64_t removed[3][2];
    int n_layers, dims[OTL_HEAD_MAX_LAYERS + 1];
    const int n_removed = otl_graph_head_layers(g, cut, removed, 3), hidden[2] = {0, 0};
    OTL_TRY(otl_head_layers_for(o->head, hidden, n_removed, (const int64_t(*)[2])removed, otl_tinfo_count(&x),
                                t->n_classes, &n_layers, dims));
    otl_head h;
    otl_model_meta mm;
    OTL_TRY(otl_head_create(&h, n_layers, dims, o->trainer.seed));
    onnxtl_status *st = otl_model_meta_init(&mm, t->f ? otl_features_meta_of(t->f)->classes : t->ds->classes,
                                            t->n_classes, &t->pre);
    if (!st) {
        const float *w[OTL_HEAD_MAX_LAYERS], *b[OTL_HEAD_MAX_LAYERS];
        for (int l = 0; l < h.n_layers; l++) w[l] = h.w[l], b[l] = h.b[l];
        const otl_head_spec spec = {h.n_layers, h.dims, w, b, mm.keys, mm.values, mm.n, 0.5f};
        st = otl_export_model(o->model_path, g->values[cut].name, x.rank, &spec, o->out_path);
        otl_model_meta_free(&mm);
    }
    otl_head_free(&h);
    return st;
}

/* --head: the model trained is out_path's, MODEL with the new head; a resumed
 * run finds it there, written by the run it resumes. */
static onnxtl_status *replace_head(net_training *t) {
    const otl_train_net_options *o = t->o;
    if (!o->out_path) return otl_error(ONNXTL_ERR_ARG, "a new head needs the model file to train it in");
    struct stat sb;
    if (o->resume && stat(o->out_path, &sb) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: no model to resume (train writes it, and its .state, after each epoch)",
                         o->out_path);
    if (!o->resume) OTL_TRY(write_new_head(t));
    onnxtl_model_release(t->model);
    t->model = NULL;
    t->source = o->out_path;
    OTL_TRY(otl_model_load_as_written(o->out_path, &t->model));
    t->logits = logits_of(otl_model_graph(t->model));
    return otl_image_model_input(t->model, &t->pre, &t->input); /* its name is the new model's */
}

/* The batch's plans and the logits' width against the classes. */
static onnxtl_status *check_output(net_training *t, const otl_plan *p) {
    const otl_graph *g = otl_model_graph(t->model);
    const otl_tinfo *y = &p->t[t->logits];
    if (y->rank != 2 || y->dims[1] != t->n_classes)
        return otl_error(ONNXTL_ERR_ARG, "%s: '%s' is not N x %d logits for the %d classes of %s: replace the "
                         "classifier with --head auto", t->o->model_path, g->values[t->logits].name, t->n_classes,
                         t->n_classes, t->o->data);
    const otl_tinfo *x = &p->t[t->from];
    t->from_count = otl_tinfo_count(x) / (x->rank > 0 && x->dims[0] > 0 ? x->dims[0] : 1);
    if (t->f && t->from_count != (int64_t)otl_features_meta_of(t->f)->dim)
        return otl_error(ONNXTL_ERR_ARG, "%s holds %u values per image, but '%s' has %lld", t->o->data,
                         otl_features_meta_of(t->f)->dim, g->values[t->from].name, (long long)t->from_count);
    char why[256];
    for (int i = 0; i < p->n_steps; i++)
        if (!otl_trainer_supports(p, i, why, sizeof why))
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s: cannot train %s", t->o->model_path, why);
    return NULL;
}

/* With --lr-backbone, the first step of the classifier in the trained part:
 * the one after the head input's (fit-head's cut); 0 when the part is all head. */
static onnxtl_status *find_head_step(const net_training *t, const otl_plan *p, int *head_step) {
    char why[256];
    const otl_graph *g = otl_model_graph(t->model);
    const int head_input = otl_graph_head_input(g, why, sizeof why);
    *head_step = 0;
    if (head_input < 0)
        return otl_error(ONNXTL_ERR_ARG, "%s: --lr-backbone needs a classifier to tell from the rest, and there is "
                         "none (%s)", t->o->model_path, why);
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] == head_input) *head_step = i + 1;
    }
    return NULL;
}

/* A parameter read by several nodes is one tensor to ONNX and trained as
 * one (tied weights); when it is only an exporter's merging of equal
 * initializers (zero biases), the user should know before training. */
static void warn_tied(const net_training *t) {
    const otl_graph *g = otl_model_graph(t->model);
    for (size_t i = 0; i < otl_trainer_param_count(t->trainer); i++) {
        const int v = otl_trainer_param_value(t->trainer, i);
        int readers = 0;
        for (int k = 0; k < g->n_nodes; k++)
            for (int j = 0; j < g->nodes[k].n_in && !g->nodes[k].removed; j++) readers += g->nodes[k].in[j] == v;
        if (readers > 1)
            otl_events_note(t->o->events, true, "'%s' is read by %d nodes and is trained as one tensor (an exporter "
                            "may have merged initializers of equal values, as zero biases)", g->values[v].name, readers);
    }
}

/* The model, its data and preprocessing, the tensor training starts at, and the parameters after it. */
static onnxtl_status *prepare(net_training *t) {
    const otl_train_net_options *o = t->o;
    struct stat sb;
    const bool features = stat(o->data, &sb) == 0 && S_ISREG(sb.st_mode);
    char why[256] = "";
    OTL_TRY(otl_model_load_as_written(o->model_path, &t->model));
    t->source = o->model_path;
    t->logits = logits_of(otl_model_graph(t->model));
    OTL_TRY(features ? open_features(t) : open_images(t, why, sizeof why));
    OTL_TRY(otl_image_model_input(t->model, &t->pre, &t->input));
    if (new_head(o)) OTL_TRY(replace_head(t));
    OTL_TRY(find_from(t));
    if (!t->f && !from_input(t)) OTL_TRY(open_frozen(t));
    sized_tape *s = &t->tapes[0];
    OTL_TRY(plans_for(t, o->batch, s));
    t->n_tapes = 1;
    OTL_TRY(check_output(t, s->part));
    otl_trainer_config c = o->trainer;
    if (c.lr_backbone > 0) OTL_TRY(find_head_step(t, s->part, &c.head_step));
    OTL_TRY(otl_error_wrap(otl_trainer_create(s->part, &c, &t->trainer), "%s", o->model_path));
    OTL_TRY(otl_tape_create(t->trainer, s->part, &s->tape));
    warn_tied(t);
    if (!t->f) {
        char pre[256];
        otl_preprocess_describe(&t->pre, pre, sizeof pre);
        otl_events_note(o->events, false, "preprocess: %s%s%s%s", pre, *why ? " (" : "", why, *why ? ")" : "");
    }
    t->dlogits = malloc(sizeof(float) * (size_t)o->batch * (size_t)t->n_classes);
    t->labels = malloc(sizeof(int) * (size_t)o->batch);
    if (t->f) t->rows = malloc(sizeof(float) * (size_t)o->batch * (size_t)t->from_count);
    return t->dlogits && t->labels && (!t->f || t->rows) ? NULL : otl_nomem();
}

static void release(net_training *t) {
    for (int i = 0; i < t->n_tapes; i++) release_sized(&t->tapes[i]);
    otl_trainer_release(t->trainer);
    onnxtl_session_release(t->frozen);
    onnxtl_model_release(t->frozen_model);
    otl_dataset_free(t->ds);
    otl_features_close(t->f);
    onnxtl_model_release(t->model);
    free(t->fingerprint);
    free(t->state_path);
    free(t->rows);
    free(t->dlogits);
    free(t->labels);
}

onnxtl_status *otl_train_net(const otl_train_net_options *o, otl_train_net_result *r) {
    memset(r, 0, sizeof *r);
    if (o->resume && !o->out_path) return otl_error(ONNXTL_ERR_ARG, "a resumed training needs the model it writes");
    if (o->batch < 1 || o->epochs < 1 || !(o->trainer.lr > 0) || o->decoders < 1 ||
        (o->schedule == OTL_SCHEDULE_STEP && (o->step_size < 1 || !(o->gamma > 0))))
        return otl_error(ONNXTL_ERR_ARG, "bad training options (batch, epochs, decoders, step size >= 1, lr and "
                         "gamma > 0)");
    net_training t = {.o = o, .r = r};
    splits s = {0};
    const double start = otl_now();
    onnxtl_status *st = prepare(&t);
    if (!st) st = t.f ? split_rows(t.f, &s) : split_images(t.ds, &s);
    if (!st) st = check_batch_sizes(&t, &s);
    if (!st && o->out_path) st = make_fingerprint(&t);
    if (!st) st = otl_train_log_open(o->log, o->resume, &t.log);
    if (!st) {
        r->train_images = s.n_train, r->eval_images = s.n_eval;
        r->eval_split = s.eval_split >= 0 ? otl_split_names[s.eval_split] : NULL;
        r->params = (int64_t)otl_trainer_param_count(t.trainer);
        otl_events_note(o->events, false, "training %zu parameter tensors%s%s%s on %zu %s, evaluating on %zu",
                        otl_trainer_param_count(t.trainer), from_input(&t) ? "" : " after '",
                        from_input(&t) ? "" : otl_model_graph(t.model)->values[t.from].name, from_input(&t) ? "" : "'",
                        s.n_train, t.f ? "cached rows" : "images", s.n_eval);
        st = run_epochs(&t, &s);
    }
    st = otl_train_log_close(t.log, o->log, st);
    r->seconds = otl_now() - start;
    free(s.train);
    free(s.eval);
    release(&t);
    return st;
}
