#include "calibrate.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "status.h"

/* Images per calibration batch: every convolution input is copied out, a few
 * hundred MB per image at batch 16 for VGG16, so batches stay small. */
#define CALIBRATE_BATCH 4

/* The training samples lie together: a scan orders samples by split first (dataset.h). */
onnxtl_status *otl_calibration_sample(const otl_dataset *ds, size_t n, size_t **picked, size_t *n_picked) {
    size_t first = 0, count = 0;
    for (size_t i = 0; i < ds->n_samples; i++)
        if (ds->samples[i].split == SPLIT_TRAIN && count++ == 0) first = i;
    if (!count) first = 0, count = ds->n_samples; /* no training split: the samples are in split order anyway */
    if (n > count) n = count;
    if (!(*picked = malloc(sizeof **picked * (n + 1)))) return otl_nomem();
    for (size_t k = 0; k < n; k++) (*picked)[k] = first + k * count / n;
    *n_picked = n;
    return NULL;
}

/* The tensors to observe: the first input of every convolution that the
 * value cut depends on, and the residual a convolution adds, once each. */
typedef struct {
    onnxtl_tensor *outs;
    size_t n;
} observed;

static void observe(observed *o, const otl_graph *g, int v) {
    if (v < 0) return;
    const char *name = g->values[v].name;
    bool seen = !otl_ranges_name_ok(name); /* a name a text line cannot hold stays fp32 */
    for (size_t k = 0; k < o->n && !seen; k++) seen = !strcmp(o->outs[k].name, name);
    if (!seen) o->outs[o->n++].name = name;
}

static onnxtl_status *find_conv_inputs(const onnxtl_model *m, int cut, observed *o) {
    const otl_graph *g = otl_model_graph(m);
    otl_plan *p;
    OTL_TRY(otl_model_plan(m, NULL, 1, &cut, 1, &p));
    if (!(o->outs = calloc(2 * (size_t)p->n_steps + 1, sizeof *o->outs))) { /* two per convolution at most */
        otl_plan_free(p);
        return otl_nomem();
    }
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        if (n->op != OP_CONV) continue;
        observe(o, g, n->in[0]);
        if (n->attrs.fused_add) observe(o, g, n->in[3]);
    }
    otl_plan_free(p);
    return NULL;
}

typedef struct {
    onnxtl_session *session;
    const otl_image_input *input;
    observed *obs;
    otl_ranges *ranges;
} pass;

/* Comparisons rather than fminf/fmaxf, so the loop vectorises; NaN and the
 * infinities count as 0, which any range of a ReLU's output holds anyway. */
static onnxtl_status *cover_tensor(otl_ranges *r, const onnxtl_tensor *t) {
    int64_t count = 1;
    for (int d = 0; d < t->rank; d++) count *= t->dims[d];
    const float *v = t->data;
    float lo = FLT_MAX, hi = -FLT_MAX;
#pragma omp parallel for simd reduction(min : lo) reduction(max : hi)
    for (int64_t i = 0; i < count; i++) {
        const float x = fabsf(v[i]) <= FLT_MAX ? v[i] : 0.0f;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    return count ? otl_ranges_cover(r, t->name, lo, hi) : NULL;
}

/* Bad images are skipped here without a word: the extraction that follows
 * names each of them. */
static onnxtl_status *on_batch(void *ctx, const otl_batch *b, otl_batch_turn *turn) {
    pass *p = ctx;
    (void)turn;
    if (!b->good) return NULL;
    onnxtl_tensor in = {.name = p->input->name, .dtype = ONNXTL_FLOAT, .rank = 4, .data = b->pixels};
    otl_image_input_dims(p->input, b->good, in.dims);
    OTL_TRY(onnxtl_session_run(p->session, &in, 1, p->obs->outs, p->obs->n));
    for (size_t k = 0; k < p->obs->n; k++) OTL_TRY(cover_tensor(p->ranges, &p->obs->outs[k]));
    return NULL;
}

onnxtl_status *otl_calibrate(const onnxtl_model *model, const otl_image_input *input, int cut,
                             const onnxtl_options *opts, otl_batch_source src, otl_ranges *out) {
    *out = (otl_ranges){0};
    onnxtl_options fp32 = *opts;
    fp32.precision = ONNXTL_PRECISION_FP32;
    fp32.calibration = NULL;
    observed obs = {0};
    pass p = {.input = input, .obs = &obs, .ranges = out};
    onnxtl_status *st = find_conv_inputs(model, cut, &obs);
    if (!st) st = onnxtl_session_create(model, &fp32, &p.session);
    src.batch = src.batch < CALIBRATE_BATCH ? src.batch : CALIBRATE_BATCH;
    src.consumers = 1;
    src.session = p.session;
    void *ctxs[1] = {&p};
    if (!st) st = otl_batches_run(&src, on_batch, ctxs);
    if (!st && !out->n) st = otl_error(ONNXTL_ERR_ARG, "the calibration saw no convolution input: no image of the "
                                       "sample could be read, or the model has no convolutions");
    onnxtl_session_release(p.session);
    free(obs.outs);
    if (st) otl_ranges_free(out);
    return st;
}
