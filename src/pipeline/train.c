#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "device.h"
#include "events.h"
#include "mix64.h"
#include "npy.h"
#include "status.h"

/* ---- randomness: splitmix64 for init and shuffling (dropout: dropout.h) ---- */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) { return otl_mix64(r->s += 0x9e3779b97f4a7c15ull); }

static float rng_uniform(rng *r) { return (float)((rng_next(r) >> 40) * (1.0 / 16777216.0)); }

/* ---- the head and its parameters ---- */

onnxtl_status *otl_head_create(otl_head *h, int n_layers, const int *dims, uint64_t seed) {
    memset(h, 0, sizeof *h);
    if (n_layers < 1 || n_layers > OTL_HEAD_MAX_LAYERS)
        return otl_error(ONNXTL_ERR_ARG, "a head has 1 to %d layers", OTL_HEAD_MAX_LAYERS);
    h->n_layers = n_layers;
    for (int l = 0; l <= n_layers; l++) {
        if (dims[l] < 1) return otl_error(ONNXTL_ERR_ARG, "layer sizes must be positive");
        h->dims[l] = dims[l];
    }
    for (int l = 0; l < n_layers; l++)
        if (!otl_add_size(h->n_params, otl_head_layer_params(h->dims, l), &h->n_params))
            return otl_error(ONNXTL_ERR_ARG, "head too large");
    if (!(h->params = malloc(h->n_params * sizeof(float))))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu head parameters", h->n_params);
    otl_head_layer_views(h->dims, h->n_layers, h->params, h->w, h->b);
    rng r = {seed};
    for (int l = 0; l < n_layers; l++) { /* nn.Linear: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) */
        float bound = 1.0f / sqrtf((float)h->dims[l]);
        float *p = h->w[l];
        for (size_t i = 0; i < otl_head_layer_params(h->dims, l); i++) p[i] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
    }
    return NULL;
}

void otl_head_free(otl_head *h) {
    free(h->params);
    memset(h, 0, sizeof *h);
}

static onnxtl_status *load_param(const char *dir, const char *kind, int l, int64_t rows, int64_t cols, float *dst) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%d.npy", dir, kind, l);
    onnxtl_tensor t;
    OTL_TRY(otl_npy_read(path, &t));
    int64_t want = rows * cols, have = 1;
    for (int i = 0; i < t.rank; i++) have *= t.dims[i];
    onnxtl_status *st = t.dtype != ONNXTL_FLOAT || have != want
                            ? otl_error(ONNXTL_ERR_ARG, "%s: expected %lld float32 values", path, (long long)want)
                            : NULL;
    if (!st) memcpy(dst, t.data, (size_t)want * sizeof(float));
    free(t.data);
    return st;
}

onnxtl_status *otl_head_load_npy(otl_head *h, const char *dir) {
    for (int l = 0; l < h->n_layers; l++) {
        OTL_TRY(load_param(dir, "w", l, h->dims[l + 1], h->dims[l], h->w[l]));
        OTL_TRY(load_param(dir, "b", l, h->dims[l + 1], 1, h->b[l]));
    }
    return NULL;
}

onnxtl_status *otl_head_save_npy(const otl_head *h, const char *dir) {
    for (int l = 0; l < h->n_layers; l++) {
        char path[4096];
        onnxtl_tensor w = {.dtype = ONNXTL_FLOAT, .rank = 2, .dims = {h->dims[l + 1], h->dims[l]}, .data = h->w[l]};
        onnxtl_tensor b = {.dtype = ONNXTL_FLOAT, .rank = 1, .dims = {h->dims[l + 1]}, .data = h->b[l]};
        snprintf(path, sizeof path, "%s/w%d.npy", dir, l);
        OTL_TRY(otl_npy_write(path, &w));
        snprintf(path, sizeof path, "%s/b%d.npy", dir, l);
        OTL_TRY(otl_npy_write(path, &b));
    }
    return NULL;
}

/* ---- the loss ---- */

double otl_cross_entropy(const float *logits, const int *labels, int n, int c, float *dlogits, int *correct) {
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * c;
        float mx = x[0];
        int arg = 0;
        for (int j = 1; j < c; j++)
            if (x[j] > mx) mx = x[j], arg = j;
        double sum = 0;
        for (int j = 0; j < c; j++) sum += exp((double)x[j] - mx);
        double log_sum = log(sum) + mx;
        loss += log_sum - x[labels[i]];
        *correct += arg == labels[i];
        for (int j = 0; dlogits && j < c; j++)
            dlogits[(size_t)i * c + j] = (float)((exp((double)x[j] - log_sum) - (j == labels[i])) / n);
    }
    return loss;
}

/* ---- the training loop ---- */

typedef struct {
    const otl_features *f;
    const otl_head *h;
    const otl_head_backend *be;
    void *state;
    int cap;                /* rows per batch buffer */
    otl_row_splits rows;
    float *x, *logits, *dlogits;
    int *labels;
} trainer;

/* Copies rows (by index, each moved on by `view`) into x and their labels. */
static void gather(trainer *t, const uint64_t *rows, int n, uint64_t view) {
    const int dim = t->h->dims[0];
    for (int i = 0; i < n; i++) {
        otl_features_values(t->f, rows[i] + view, t->x + (size_t)i * dim);
        t->labels[i] = otl_features_tag(t->f, rows[i] + view).label;
    }
}

static onnxtl_status *evaluate(trainer *t, double *loss, double *acc) {
    int correct = 0;
    double sum = 0;
    const int c = t->h->dims[t->h->n_layers];
    for (size_t s = 0; s < t->rows.n_eval; s += (size_t)t->cap) {
        int n = t->rows.n_eval - s < (size_t)t->cap ? (int)(t->rows.n_eval - s) : t->cap;
        gather(t, t->rows.eval + s, n, 0);
        OTL_TRY(t->be->forward(t->state, t->x, n, NULL, t->logits));
        sum += otl_cross_entropy(t->logits, t->labels, n, c, NULL, &correct);
    }
    *loss = t->rows.n_eval ? sum / (double)t->rows.n_eval : -1;
    *acc = t->rows.n_eval ? (double)correct / (double)t->rows.n_eval : -1;
    return NULL;
}

void otl_shuffle(uint64_t *x, size_t n, uint64_t *state) {
    rng r = {*state};
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(&r) % i);
        uint64_t tmp = x[i - 1];
        x[i - 1] = x[j];
        x[j] = tmp;
    }
    *state = r.s;
}

/* Whether rows first.. hold views 0..views-1 of one image. */
static bool views_follow(const otl_features *f, uint64_t first, otl_row_tag tag, int views) {
    if (first + (uint64_t)views > otl_features_rows(f)) return false;
    for (int v = 0; v < views; v++) {
        const otl_row_tag t = otl_features_tag(f, first + (uint64_t)v);
        if (t.image != tag.image || t.view != v) return false;
    }
    return true;
}

onnxtl_status *otl_features_splits(const otl_features *f, otl_row_splits *s) {
    const uint64_t *split = otl_features_split_rows(f);
    s->eval_split = split[SPLIT_TEST] ? SPLIT_TEST : split[SPLIT_VAL] ? SPLIT_VAL : -1;
    const uint64_t rows = otl_features_rows(f);
    s->train = malloc(sizeof(uint64_t) * (rows + 1));
    s->eval = malloc(sizeof(uint64_t) * (rows + 1));
    s->n_train = s->n_eval = 0;
    s->views = otl_features_meta_of(f)->views;
    if (!s->train || !s->eval) return otl_nomem();
    for (uint64_t i = 0; i < rows; i++) {
        const otl_row_tag tag = otl_features_tag(f, i);
        if (tag.split == SPLIT_TRAIN || tag.split == SPLIT_ALL) s->train[s->n_train++] = i;
        else if ((int)tag.split == s->eval_split) s->eval[s->n_eval++] = i;
        const int views = otl_views_of(s->views, tag.split);
        if (!views_follow(f, i, tag, views))
            return otl_error(ONNXTL_ERR_FORMAT, "%s: row %llu: the %d views of %s are not the rows that follow it "
                             "(damaged file)", otl_features_path(f), (unsigned long long)i, views,
                             otl_features_meta_of(f)->images[tag.image].path);
        i += (uint64_t)views - 1;
    }
    if (!s->n_train)
        return otl_error(ONNXTL_ERR_ARG, "%s: no training rows (extract a train/ split or an unsplit folder)",
                         otl_features_path(f));
    return NULL;
}

void otl_row_splits_free(otl_row_splits *s) {
    free(s->train);
    free(s->eval);
}

static onnxtl_status *split_rows(trainer *t, otl_train_result *r) {
    OTL_TRY(otl_features_splits(t->f, &t->rows));
    r->eval_split = t->rows.eval_split;
    r->train_rows = t->rows.n_train;
    r->eval_rows = t->rows.n_eval;
    return NULL;
}

onnxtl_status *otl_train_history_add_step(otl_train_history *h, double loss) {
    if (h->n_steps == h->cap_steps) {
        const int64_t cap = h->cap_steps ? 2 * h->cap_steps : 256;
        double *grown = realloc(h->step_loss, (size_t)cap * sizeof *grown);
        if (!grown) return otl_nomem();
        h->step_loss = grown, h->cap_steps = cap;
    }
    h->step_loss[h->n_steps++] = loss;
    return NULL;
}

onnxtl_status *otl_train_history_add_epoch(otl_train_history *h, const otl_epoch_figures *e) {
    if (h->n_epochs == h->cap_epochs) {
        const int cap = h->cap_epochs ? 2 * h->cap_epochs : 16;
        otl_epoch_figures *grown = realloc(h->epochs, (size_t)cap * sizeof *grown);
        if (!grown) return otl_nomem();
        h->epochs = grown, h->cap_epochs = cap;
    }
    h->epochs[h->n_epochs++] = *e; /* eval_split is one of otl_split_names: it stays valid */
    return NULL;
}

void otl_train_history_free(otl_train_history *h) {
    free(h->epochs);
    free(h->step_loss);
    *h = (otl_train_history){0};
}


/* One epoch over the training rows; returns mean loss and accuracy. */
static onnxtl_status *train_epoch(trainer *t, const otl_train_options *o, rng *r, FILE *log, int epoch, int64_t *steps,
                                  double *loss, double *acc) {
    const int c = t->h->dims[t->h->n_layers];
    char what[32];
    snprintf(what, sizeof what, "epoch %d", epoch);
    /* An epoch of a few dozen steps is over before a progress bar helps. */
    const size_t n_steps = (t->rows.n_train + (size_t)o->batch - 1) / (size_t)o->batch;
    const otl_events *ev = n_steps > 50 ? o->events : NULL;
    otl_events_progress(ev, what, "step", 0, n_steps);
    if (o->shuffle) otl_shuffle(t->rows.train, t->rows.n_train, &r->s);
    double sum = 0;
    int correct = 0;
    for (size_t s = 0, step = 0; s < t->rows.n_train; s += (size_t)o->batch, step++) {
        int n = t->rows.n_train - s < (size_t)o->batch ? (int)(t->rows.n_train - s) : o->batch;
        gather(t, t->rows.train + s, n, otl_epoch_view(t->rows.views, epoch));
        const otl_dropout drop = {o->dropout, o->seed, (uint64_t)*steps};
        OTL_TRY(t->be->forward(t->state, t->x, n, o->dropout > 0 ? &drop : NULL, t->logits));
        const int before = correct;
        double l = otl_cross_entropy(t->logits, t->labels, n, c, t->dlogits, &correct);
        if (!isfinite(l)) return otl_error(ONNXTL_ERR_RUNTIME, "the loss became non-finite at epoch %d; lower --lr", epoch);
        sum += l;
        ++*steps;
        if (log)
            fprintf(log, "{\"step\": %lld, \"epoch\": %d, \"loss\": %.9g, \"accuracy\": %.6f}\n", (long long)*steps,
                    epoch, l / n, (double)(correct - before) / n);
        if (o->history) OTL_TRY(otl_train_history_add_step(o->history, l / n));
        OTL_TRY(t->be->step(t->state, t->dlogits, n));
        otl_events_progress(ev, what, "step", step + 1, n_steps);
    }
    *loss = sum / (double)t->rows.n_train;
    *acc = (double)correct / (double)t->rows.n_train;
    return NULL;
}

/* Every row intact and every feature finite, checked on all cores before any training. */
onnxtl_status *otl_features_check_finite(const otl_features *f) {
    OTL_TRY(otl_features_check_rows(f));
    const int64_t n = (int64_t)otl_features_rows(f);
    int64_t first_bad = n;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
    for (int64_t i = 0; i < n; i++)
        if (i < first_bad && !otl_features_finite(f, (uint64_t)i)) first_bad = i;
    if (first_bad == n) return NULL;
    const otl_row_tag tag = otl_features_tag(f, (uint64_t)first_bad);
    return otl_error(ONNXTL_ERR_FORMAT, "%s: row %lld (%s) holds non-finite values", otl_features_path(f),
                     (long long)first_bad, otl_features_meta_of(f)->images[tag.image].path);
}

void otl_train_log_epoch(FILE *log, const otl_epoch_figures *e) {
    fprintf(log, "{\"epoch\": %d, \"train_loss\": %.9g, \"train_accuracy\": %.6f", e->epoch, e->train_loss, e->train_acc);
    if (e->eval_split)
        fprintf(log, ", \"%s_loss\": %.9g, \"%s_accuracy\": %.6f", e->eval_split, e->eval_loss, e->eval_split, e->eval_acc);
    fputs("}\n", log);
}

/* Line-buffered: each line is on disk as it is logged, for a plot that
 * follows the file and for a resume after a kill (otl_train_log_rewind). */
onnxtl_status *otl_train_log_open(const char *path, bool append, FILE **log) {
    *log = path ? fopen(path, append ? "a" : "w") : NULL;
    if (path && !*log) return otl_error(ONNXTL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (*log) setvbuf(*log, NULL, _IOLBF, 0);
    return NULL;
}

/* Where the line of epoch `epoch`'s figures ends in the log at path, or -1. */
static long end_of_epoch_line(const char *path, int epoch) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char line[4096];
    long end = -1;
    int e;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "{\"epoch\": %d,", &e) == 1 && e == epoch) end = ftell(f);
    fclose(f);
    return end;
}

onnxtl_status *otl_train_log_rewind(FILE *log, const char *path, int epochs_done) {
    if (!log) return NULL;
    if (fflush(log) != 0) return otl_error(ONNXTL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    const long end = end_of_epoch_line(path, epochs_done);
    if (end >= 0 && ftruncate(fileno(log), (off_t)end) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot drop the interrupted epoch's lines: %s", path, strerror(errno));
    return NULL;
}

onnxtl_status *otl_train_log_close(FILE *log, const char *path, onnxtl_status *st) {
    if (!log) return st;
    const bool failed = ferror(log) != 0;
    if ((fclose(log) != 0 || failed) && !st) st = otl_error(ONNXTL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return st;
}

static onnxtl_status *run_epochs(trainer *t, otl_head *h, const otl_train_options *o, otl_train_result *r, float *best) {
    rng rr = {o->seed ^ 0x5eed};
    FILE *log;
    OTL_TRY(otl_train_log_open(o->log, false, &log));
    onnxtl_status *st = NULL;
    double best_acc = -1;
    int64_t steps = 0;
    for (int e = 1; e <= o->epochs && !st; e++) {
        double loss = 0, acc = 0, tl = -1, ta = -1;
        st = train_epoch(t, o, &rr, log, e, &steps, &loss, &acc);
        if (!st) st = evaluate(t, &tl, &ta);
        if (st) break;
        const otl_epoch_figures figures = {e, o->epochs, loss, acc, tl, ta,
                                           t->rows.n_eval ? otl_split_names[r->eval_split] : NULL};
        otl_events_epoch(o->events, &figures);
        if (log) otl_train_log_epoch(log, &figures);
        if (o->history) st = otl_train_history_add_epoch(o->history, &figures);
        bool keep = o->keep_last || !t->rows.n_eval || ta > best_acc;
        if (keep) {
            best_acc = ta;
            st = t->be->read(t->state, best);
            *r = (otl_train_result){e, loss, acc, tl, ta, r->eval_split, r->train_rows, r->eval_rows};
        }
    }
    st = otl_train_log_close(log, o->log, st);
    if (!st) memcpy(h->params, best, h->n_params * sizeof(float));
    return st;
}

/* "cpu" or "cuda[:N]" to the head backend that trains there. */
static onnxtl_status *pick_head_backend(const otl_train_options *o, otl_head_config *c, const otl_head_backend **be) {
    otl_device d;
    OTL_TRY(otl_device_parse(o->device, &d));
    c->device_index = d.index;
    c->precision = o->precision;
    return otl_device_head_backend(&d, o->precision, be);
}

static onnxtl_status *alloc_batch_buffers(trainer *t) {
    const otl_head *h = t->h;
    const size_t cap = (size_t)t->cap;
    t->x = malloc(sizeof(float) * cap * (size_t)h->dims[0]);
    t->logits = malloc(sizeof(float) * cap * (size_t)h->dims[h->n_layers]);
    t->dlogits = malloc(sizeof(float) * cap * (size_t)h->dims[h->n_layers]);
    t->labels = calloc(cap, sizeof(int));
    bool ok = t->x && t->logits && t->dlogits && t->labels;
    return ok ? NULL : otl_error(ONNXTL_ERR_NOMEM, "cannot allocate batch buffers");
}

static void free_trainer(trainer *t) {
    if (t->state) t->be->release(t->state);
    otl_row_splits_free(&t->rows);
    free(t->x);
    free(t->logits);
    free(t->dlogits);
    free(t->labels);
}

static otl_head_config head_config(const otl_head *h, const otl_train_options *o, int cap) {
    otl_head_config c = {.n_layers = h->n_layers, .adam = o->adam, .lr = o->lr, .momentum = o->momentum,
                         .weight_decay = o->weight_decay, .cap = cap, .threads = o->threads};
    memcpy(c.dims, h->dims, sizeof c.dims);
    return c;
}

onnxtl_status *otl_train(otl_head *h, const otl_features *f, const otl_train_options *o, otl_train_result *r) {
    memset(r, 0, sizeof *r);
    if (o->batch < 1 || o->epochs < 1 || !(o->lr > 0) || o->dropout < 0 || o->dropout >= 1)
        return otl_error(ONNXTL_ERR_ARG, "bad training options (batch, epochs, lr > 0, 0 <= dropout < 1)");
    OTL_TRY(otl_features_check_finite(f));
    trainer t = {.f = f, .h = h, .cap = o->batch > 256 ? o->batch : 256};
    otl_head_config c = head_config(h, o, t.cap);
    float *best = malloc(h->n_params * sizeof(float));
    onnxtl_status *st = best ? pick_head_backend(o, &c, &t.be) : otl_nomem();
    if (!st) st = split_rows(&t, r);
    if (!st) st = alloc_batch_buffers(&t);
    if (!st) st = t.be->create(&c, h->params, &t.state);
    if (!st) st = run_epochs(&t, h, o, r, best);
    free_trainer(&t);
    free(best);
    return st;
}
