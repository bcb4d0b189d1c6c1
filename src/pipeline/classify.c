#include "classify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "status.h"

#define NUMBER_SLOT 24 /* room for a class number when the model names none */

static onnxtl_status *read_classes(otl_classifier *c, const otl_graph *g, int64_t n_outputs) {
    const char *text = otl_graph_meta(g, "onnxtl.classes");
    if (!text) { /* not from fit-head: number the outputs */
        if (!(c->class_text = calloc((size_t)n_outputs, NUMBER_SLOT))) return otl_nomem();
        for (int64_t i = 0; i < n_outputs; i++) snprintf(c->class_text + NUMBER_SLOT * i, NUMBER_SLOT, "%lld", (long long)i);
    } else if (!(c->class_text = strdup(text))) {
        return otl_nomem();
    }
    c->classes = calloc((size_t)n_outputs + 1, sizeof *c->classes);
    if (!c->classes) return otl_nomem();
    char *p = c->class_text;
    for (c->n_classes = 0; c->n_classes < n_outputs && p; c->n_classes++) {
        c->classes[c->n_classes] = p;
        p = text ? strchr(p, '\n') : p + NUMBER_SLOT;
        if (text && p) *p++ = '\0';
    }
    if (c->n_classes != n_outputs || (text && p))
        return otl_error(ONNXTL_ERR_MODEL, "%s: metadata names %s classes than the model outputs (%lld)", g->path,
                         c->n_classes < n_outputs ? "fewer" : "more", (long long)n_outputs);
    return NULL;
}

onnxtl_status *otl_classifier_open(const char *model_path, const onnxtl_options *opts, const otl_preprocess_spec *user,
                                   otl_classifier *c) {
    memset(c, 0, sizeof *c);
    OTL_TRY(onnxtl_model_load(model_path, &c->model));
    const otl_graph *g = otl_model_graph(c->model);
    otl_preprocess_default(&c->pre);
    char why[256];
    otl_image_model_defaults(c->model, &c->pre, why, sizeof why);
    const otl_preprocess_spec fit_head = {otl_graph_meta(g, "onnxtl.resize"), otl_graph_meta(g, "onnxtl.crop"),
                                          otl_graph_meta(g, "onnxtl.mean"), otl_graph_meta(g, "onnxtl.std"),
                                          otl_graph_meta(g, "onnxtl.channels"), otl_graph_meta(g, "onnxtl.scale")};
    OTL_TRY(otl_error_wrap(otl_preprocess_parse(&c->pre, &fit_head), "%s: preprocessing metadata", model_path));
    OTL_TRY(otl_preprocess_parse(&c->pre, user));
    OTL_TRY(otl_image_model_input(c->model, &c->pre, &c->input));
    const otl_value *out = &g->values[g->outputs[0]];
    c->output = out->name;
    int64_t n_out = out->rank == 2 && out->dims[1] > 0 ? out->dims[1] : -1;
    if (n_out < 1)
        return otl_error(ONNXTL_ERR_MODEL, "%s: output '%s' is not N x classes (is it a model from fit-head?)", model_path, out->name);
    OTL_TRY(read_classes(c, g, n_out));
    return onnxtl_session_create(c->model, opts, &c->session);
}

void otl_classifier_close(otl_classifier *c) {
    onnxtl_session_release(c->session);
    onnxtl_model_release(c->model);
    free(c->classes);
    free(c->class_text);
    memset(c, 0, sizeof *c);
}

typedef struct {
    otl_classifier *c;
    const otl_classify_sink *sink;
} batch_ctx;

/* The network runs first; the sink hears of the batch's images in order. */
static onnxtl_status *on_batch(void *ctx, const otl_batch *b, otl_batch_turn *turn) {
    batch_ctx *x = ctx;
    onnxtl_tensor out = {.name = x->c->output};
    if (b->good) {
        onnxtl_tensor in = {.name = x->c->input.name, .dtype = ONNXTL_FLOAT, .rank = 4, .data = b->pixels};
        otl_image_input_dims(&x->c->input, b->count, in.dims);
        OTL_TRY(onnxtl_session_run(x->c->session, &in, 1, &out, 1));
    }
    if (!otl_batch_wait_turn(turn)) return NULL;
    for (size_t i = 0; i < b->n_bad; i++) x->sink->on_error(x->sink->ctx, b->bad[i], b->why[i]);
    for (size_t i = 0; i < b->good; i++)
        x->sink->on_image(x->sink->ctx, b->index[i], (const float *)out.data + i * (size_t)x->c->n_classes);
    return NULL;
}

onnxtl_status *otl_classify_files(otl_classifier *c, const char *const *paths, size_t n, int batch,
                                  const otl_classify_sink *sink) {
    otl_batch_source src = {.paths = paths, .n = n, .pre = &c->pre, .height = c->input.height,
                            .width = c->input.width, .hwc = c->input.nhwc, .batch = batch, .decoders = 1,
                            .consumers = 1, .session = c->session};
    batch_ctx x = {c, sink};
    void *ctxs[1] = {&x};
    return n ? otl_batches_run(&src, on_batch, ctxs) : NULL;
}

/* The public API's classifier is the pipeline's, one image at a time. */
struct onnxtl_classifier {
    otl_classifier c;
};

onnxtl_status *onnxtl_classifier_open(const char *model_path, const onnxtl_options *opts, onnxtl_classifier **out) {
    static const onnxtl_options defaults; /* the CPU, all cores */
    onnxtl_classifier *h = calloc(1, sizeof *h);
    if (!h) return otl_nomem();
    onnxtl_status *st = otl_classifier_open(model_path, opts ? opts : &defaults, NULL, &h->c);
    if (st) {
        onnxtl_classifier_release(h);
        return st;
    }
    *out = h;
    return NULL;
}

size_t onnxtl_classifier_class_count(const onnxtl_classifier *h) { return (size_t)h->c.n_classes; }

const char *onnxtl_classifier_class_name(const onnxtl_classifier *h, size_t i) {
    return i < (size_t)h->c.n_classes ? h->c.classes[i] : NULL;
}

typedef struct {
    float *probabilities;
    size_t n;
    bool classified;
    char why[512];
} one_image;

static void take_probabilities(void *ctx, size_t index, const float *probs) {
    one_image *o = ctx;
    memcpy(o->probabilities, probs, o->n * sizeof *probs);
    o->classified = true;
}

static void take_reason(void *ctx, size_t index, const char *why) {
    one_image *o = ctx;
    snprintf(o->why, sizeof o->why, "%s", why);
}

onnxtl_status *onnxtl_classifier_classify(onnxtl_classifier *h, const char *image_path, float *probabilities) {
    one_image o = {.probabilities = probabilities, .n = (size_t)h->c.n_classes};
    const otl_classify_sink sink = {take_probabilities, take_reason, &o};
    OTL_TRY(otl_classify_files(&h->c, &image_path, 1, 1, &sink));
    return o.classified ? NULL : otl_error(ONNXTL_ERR_FORMAT, "%s", o.why);
}

void onnxtl_classifier_release(onnxtl_classifier *h) {
    if (!h) return;
    otl_classifier_close(&h->c);
    free(h);
}
