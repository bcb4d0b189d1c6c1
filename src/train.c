#include "train.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "cpu.h"
#include "npy.h"
#include "progress.h"
#include "status.h"

/* ---- randomness: splitmix64, enough for init, shuffling and dropout ---- */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_uniform(rng *r) { return (float)((rng_next(r) >> 40) * (1.0 / 16777216.0)); }

/* ---- the head and its parameters ---- */

static size_t layer_params(const otl_head *h, int l) {
    return (size_t)h->dims[l + 1] * (size_t)h->dims[l] + (size_t)h->dims[l + 1];
}

/* Points w[l] and b[l] into a flat parameter array laid out w0 b0 w1 b1 ... */
static void layer_views(const otl_head *h, float *base, float **w, float **b) {
    size_t off = 0;
    for (int l = 0; l < h->n_layers; l++) {
        w[l] = base + off;
        b[l] = base + off + (size_t)h->dims[l + 1] * (size_t)h->dims[l];
        off += layer_params(h, l);
    }
}

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
        if (!otl_add_size(h->n_params, layer_params(h, l), &h->n_params))
            return otl_error(ONNXTL_ERR_ARG, "head too large");
    if (!(h->params = malloc(h->n_params * sizeof(float))))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu head parameters", h->n_params);
    layer_views(h, h->params, h->w, h->b);
    rng r = {seed};
    for (int l = 0; l < n_layers; l++) { /* nn.Linear: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) */
        float bound = 1.0f / sqrtf((float)h->dims[l]);
        float *p = h->w[l];
        for (size_t i = 0; i < layer_params(h, l); i++) p[i] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
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

/* ---- forward and backward for one batch ---- */

/* Activations of one batch: a[l] is layer l's input (a[0] the features),
 * z[l] its output before Relu, mask[l] the dropout scale after hidden layer l. */
typedef struct {
    int cap; /* rows */
    float *a[OTL_HEAD_MAX_LAYERS], *z[OTL_HEAD_MAX_LAYERS], *mask[OTL_HEAD_MAX_LAYERS];
    float *dz, *da; /* gradient scratch, widest layer */
    float *mem;     /* one allocation behind all of the above */
} batch_acts;

static onnxtl_status *acts_create(batch_acts *b, const otl_head *h, int cap) {
    memset(b, 0, sizeof *b);
    b->cap = cap;
    size_t widest = 0, total = 0;
    for (int l = 0; l <= h->n_layers; l++) widest = (size_t)h->dims[l] > widest ? (size_t)h->dims[l] : widest;
    for (int l = 0; l < h->n_layers; l++) total += (size_t)h->dims[l] + 2 * (size_t)h->dims[l + 1];
    total = (total + 2 * widest) * (size_t)cap;
    if (!(b->mem = malloc(total * sizeof(float)))) return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate batch activations");
    float *p = b->mem;
    for (int l = 0; l < h->n_layers; l++) {
        b->a[l] = p, p += (size_t)h->dims[l] * cap;
        b->z[l] = p, p += (size_t)h->dims[l + 1] * cap;
        b->mask[l] = p, p += (size_t)h->dims[l + 1] * cap;
    }
    b->dz = p, p += widest * cap;
    b->da = p;
    return NULL;
}

static void linear_forward(const float *x, const float *w, const float *b, int n, int in, int out, float *y) {
    otl_sgemm(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++) y[(size_t)i * out + j] += b[j];
}

/* z[l] -> a[l+1]: Relu, then inverted dropout in training. */
static void relu_dropout_forward(batch_acts *ba, int l, int n, int width, float p, rng *r) {
    const float keep = 1.0f - p, scale = keep > 0 ? 1.0f / keep : 0.0f;
    for (size_t i = 0; i < (size_t)n * width; i++) {
        float m = p > 0 ? (rng_uniform(r) < keep ? scale : 0.0f) : 1.0f;
        ba->mask[l][i] = ba->z[l][i] > 0.0f ? m : 0.0f;
        ba->a[l + 1][i] = ba->z[l][i] * ba->mask[l][i];
    }
}

static void head_forward(const otl_head *h, batch_acts *ba, int n, float dropout, rng *r) {
    for (int l = 0; l < h->n_layers; l++) {
        linear_forward(ba->a[l], h->w[l], h->b[l], n, h->dims[l], h->dims[l + 1], ba->z[l]);
        if (l + 1 < h->n_layers) relu_dropout_forward(ba, l, n, h->dims[l + 1], dropout, r);
    }
}

/* Mean softmax cross-entropy of logits against labels; dlogits gets its gradient.
 * Returns the summed loss; *correct counts argmax hits. */
static double cross_entropy(const float *logits, const int *labels, int n, int c, float *dlogits, int *correct) {
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

/* Gradients of every parameter into grads (laid out like params) from dz of the last layer. */
static void head_backward(const otl_head *h, batch_acts *ba, int n, float *grads) {
    float *gw[OTL_HEAD_MAX_LAYERS], *gb[OTL_HEAD_MAX_LAYERS];
    layer_views(h, grads, gw, gb);
    for (int l = h->n_layers - 1; l >= 0; l--) {
        const int in = h->dims[l], out = h->dims[l + 1];
        otl_sgemm(true, false, out, in, n, 1.0f, ba->dz, out, ba->a[l], in, 0.0f, gw[l], in);
        for (int j = 0; j < out; j++) {
            float s = 0;
            for (int i = 0; i < n; i++) s += ba->dz[(size_t)i * out + j];
            gb[l][j] = s;
        }
        if (l == 0) break; /* the features are frozen */
        otl_sgemm(false, false, n, in, out, 1.0f, ba->dz, out, h->w[l], in, 0.0f, ba->da, in);
        for (size_t i = 0; i < (size_t)n * in; i++) ba->dz[i] = ba->da[i] * ba->mask[l - 1][i];
    }
}

/* ---- optimizers, as torch.optim applies them ---- */

typedef struct {
    float *grads, *m, *v; /* one allocation each */
    int64_t step;
} optim_state;

static void adam_step(const otl_train_options *o, optim_state *s, float *p, size_t n) {
    s->step++;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const double bc1 = 1.0 - pow(0.9, (double)s->step), bc2 = 1.0 - pow(0.999, (double)s->step);
    const float step_size = (float)(o->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float one_b1 = (float)(1.0 - 0.9), one_b2 = (float)(1.0 - 0.999), wd = o->weight_decay;
    float *g = s->grads, *m = s->m, *v = s->v;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        m[i] = m[i] * b1 + one_b1 * gi;
        v[i] = v[i] * b2 + one_b2 * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] + -step_size * (m[i] / denom);
    }
}

static void sgd_step(const otl_train_options *o, optim_state *s, float *p, size_t n) {
    const bool first = s->step++ == 0;
    const float lr = o->lr, mom = o->momentum, wd = o->weight_decay;
    float *g = s->grads, *buf = s->m;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        if (mom != 0.0f) {
            buf[i] = first ? d : buf[i] * mom + d;
            d = buf[i];
        }
        p[i] = p[i] + -lr * d;
    }
}

/* ---- the training loop ---- */

typedef struct {
    const otl_features *f;
    const otl_head *h;
    uint64_t *train, *eval; /* row indices */
    size_t n_train, n_eval;
    batch_acts ba;
    int *labels;
    float *logits_grad;
} trainer;

/* Copies rows (by index) into a[0] and their labels. */
static void gather(trainer *t, const uint64_t *rows, int n) {
    const int dim = t->h->dims[0];
    for (int i = 0; i < n; i++) {
        otl_row_tag tag;
        memcpy(t->ba.a[0] + (size_t)i * dim, otl_features_row(t->f, rows[i], &tag), sizeof(float) * dim);
        t->labels[i] = tag.label;
    }
}

static void evaluate(trainer *t, double *loss, double *acc) {
    int correct = 0;
    double sum = 0;
    const int c = t->h->dims[t->h->n_layers];
    for (size_t s = 0; s < t->n_eval; s += (size_t)t->ba.cap) {
        int n = t->n_eval - s < (size_t)t->ba.cap ? (int)(t->n_eval - s) : t->ba.cap;
        gather(t, t->eval + s, n);
        head_forward(t->h, &t->ba, n, 0.0f, NULL);
        sum += cross_entropy(t->ba.z[t->h->n_layers - 1], t->labels, n, c, NULL, &correct);
    }
    *loss = t->n_eval ? sum / (double)t->n_eval : -1;
    *acc = t->n_eval ? (double)correct / (double)t->n_eval : -1;
}

static void shuffle(uint64_t *x, size_t n, rng *r) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(r) % i);
        uint64_t tmp = x[i - 1];
        x[i - 1] = x[j];
        x[j] = tmp;
    }
}

static onnxtl_status *split_rows(trainer *t, otl_train_result *r) {
    const otl_features *f = t->f;
    const uint64_t *split = otl_features_split_rows(f);
    r->eval_split = split[SPLIT_TEST] ? SPLIT_TEST : split[SPLIT_VAL] ? SPLIT_VAL : -1;
    uint64_t rows = otl_features_rows(f);
    t->train = malloc(sizeof(uint64_t) * (rows + 1));
    t->eval = malloc(sizeof(uint64_t) * (rows + 1));
    if (!t->train || !t->eval) return otl_nomem();
    for (uint64_t i = 0; i < rows; i++) {
        otl_row_tag tag;
        otl_features_row(f, i, &tag);
        if (tag.split == SPLIT_TRAIN || tag.split == SPLIT_ALL) t->train[t->n_train++] = i;
        else if ((int)tag.split == r->eval_split) t->eval[t->n_eval++] = i;
    }
    if (!t->n_train)
        return otl_error(ONNXTL_ERR_ARG, "%s: no training rows (extract a train/ split or an unsplit folder)",
                         otl_features_path(f));
    r->train_rows = t->n_train;
    r->eval_rows = t->n_eval;
    return NULL;
}

static FILE *open_step_log(const otl_train_options *o) {
    return o->step_log ? fopen(o->step_log, "w") : NULL;
}

/* One epoch over the training rows; returns mean loss and accuracy. */
static onnxtl_status *train_epoch(trainer *t, otl_head *h, optim_state *os, const otl_train_options *o, rng *r,
                                  FILE *log, int epoch, double *loss, double *acc) {
    const int c = h->dims[h->n_layers];
    otl_progress prog;
    char what[32];
    snprintf(what, sizeof what, "epoch %d", epoch);
    otl_progress_start(&prog, what, "step", (t->n_train + (size_t)o->batch - 1) / (size_t)o->batch, o->quiet);
    if (o->shuffle) shuffle(t->train, t->n_train, r);
    double sum = 0;
    int correct = 0;
    for (size_t s = 0, step = 0; s < t->n_train; s += (size_t)o->batch, step++) {
        int n = t->n_train - s < (size_t)o->batch ? (int)(t->n_train - s) : o->batch;
        gather(t, t->train + s, n);
        head_forward(h, &t->ba, n, o->dropout, r);
        double l = cross_entropy(t->ba.z[h->n_layers - 1], t->labels, n, c, t->ba.dz, &correct);
        if (!isfinite(l)) return otl_error(ONNXTL_ERR_RUNTIME, "the loss became non-finite at epoch %d; lower --lr", epoch);
        sum += l;
        if (log) fprintf(log, "%lld %.9g\n", (long long)os->step + 1, l / n);
        head_backward(h, &t->ba, n, os->grads);
        if (o->adam) adam_step(o, os, h->params, h->n_params);
        else sgd_step(o, os, h->params, h->n_params);
        if (prog.total > 50) otl_progress_update(&prog, step + 1);
    }
    if (prog.total > 50 && !o->quiet) otl_progress_end(&prog);
    *loss = sum / (double)t->n_train;
    *acc = (double)correct / (double)t->n_train;
    return NULL;
}

static onnxtl_status *check_finite(const otl_features *f) {
    const uint32_t dim = otl_features_meta_of(f)->dim;
    for (uint64_t i = 0; i < otl_features_rows(f); i++) {
        otl_row_tag tag;
        const float *x = otl_features_row(f, i, &tag);
        for (uint32_t k = 0; k < dim; k++)
            if (!isfinite(x[k]))
                return otl_error(ONNXTL_ERR_FORMAT, "%s: row %llu (%s) holds non-finite values", otl_features_path(f),
                                 (unsigned long long)i, otl_features_meta_of(f)->images[tag.image].path);
    }
    return NULL;
}

static onnxtl_status *run_epochs(trainer *t, otl_head *h, optim_state *os, const otl_train_options *o,
                                 otl_train_result *r, float *best) {
    rng rr = {o->seed ^ 0x5eed};
    FILE *log = open_step_log(o);
    if (o->step_log && !log) return otl_error(ONNXTL_ERR_IO, "%s: cannot create", o->step_log);
    onnxtl_status *st = NULL;
    double best_acc = -1;
    for (int e = 1; e <= o->epochs && !st; e++) {
        double loss = 0, acc = 0, tl, ta;
        st = train_epoch(t, h, os, o, &rr, log, e, &loss, &acc);
        if (st) break;
        evaluate(t, &tl, &ta);
        if (!o->quiet) {
            printf("epoch %d/%d: train loss %.4f acc %.4f", e, o->epochs, loss, acc);
            if (t->n_eval) printf(", %s loss %.4f acc %.4f", otl_split_names[r->eval_split], tl, ta);
            printf("\n");
            fflush(stdout);
        }
        bool keep = o->keep_last || !t->n_eval || ta > best_acc;
        if (keep) {
            best_acc = ta;
            memcpy(best, h->params, h->n_params * sizeof(float));
            *r = (otl_train_result){e, loss, acc, tl, ta, r->eval_split, r->train_rows, r->eval_rows};
        }
    }
    if (log) fclose(log);
    if (!st) memcpy(h->params, best, h->n_params * sizeof(float));
    return st;
}

onnxtl_status *otl_train(otl_head *h, const otl_features *f, const otl_train_options *o, otl_train_result *r) {
    memset(r, 0, sizeof *r);
    if (o->batch < 1 || o->epochs < 1 || !(o->lr > 0) || o->dropout < 0 || o->dropout >= 1)
        return otl_error(ONNXTL_ERR_ARG, "bad training options (batch, epochs, lr > 0, 0 <= dropout < 1)");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    OTL_TRY(check_finite(f));
    trainer t = {.f = f, .h = h};
    optim_state os = {0};
    float *best = NULL;
    onnxtl_status *st = split_rows(&t, r);
    if (!st) st = acts_create(&t.ba, h, o->batch > 256 ? o->batch : 256);
    if (!st) {
        os.grads = calloc(h->n_params, sizeof(float));
        os.m = calloc(h->n_params, sizeof(float));
        os.v = o->adam ? calloc(h->n_params, sizeof(float)) : NULL;
        best = malloc(h->n_params * sizeof(float));
        t.labels = calloc((size_t)t.ba.cap, sizeof(int));
        if (!os.grads || !os.m || (o->adam && !os.v) || !best || !t.labels)
            st = otl_error(ONNXTL_ERR_NOMEM, "cannot allocate optimizer state for %zu parameters", h->n_params);
    }
    if (!st) st = run_epochs(&t, h, &os, o, r, best);
    free(t.train);
    free(t.eval);
    free(t.labels);
    free(t.ba.mem);
    free(os.grads);
    free(os.m);
    free(os.v);
    free(best);
    return st;
}

onnxtl_status *otl_head_predict(const otl_head *h, const float *x, int n, float *probs) {
    batch_acts ba;
    OTL_TRY(acts_create(&ba, h, n));
    memcpy(ba.a[0], x, sizeof(float) * (size_t)n * h->dims[0]);
    head_forward(h, &ba, n, 0.0f, NULL);
    const int c = h->dims[h->n_layers];
    for (int i = 0; i < n; i++) {
        const float *z = ba.z[h->n_layers - 1] + (size_t)i * c;
        float mx = z[0];
        for (int j = 1; j < c; j++) mx = z[j] > mx ? z[j] : mx;
        double sum = 0;
        for (int j = 0; j < c; j++) sum += exp((double)z[j] - mx);
        for (int j = 0; j < c; j++) probs[(size_t)i * c + j] = (float)(exp((double)z[j] - mx) / sum);
    }
    free(ba.mem);
    return NULL;
}
