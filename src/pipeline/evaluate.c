#include "evaluate.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

static void record(void *ctx, size_t index, const float *probs) {
    otl_evaluation *e = ctx;
    int best = 0;
    for (int j = 1; j < e->c.n_classes; j++)
        if (probs[j] > probs[best]) best = j;
    e->predicted[index] = best;
    e->confusion[e->to_model[e->ds->samples[index].label] * e->c.n_classes + best]++;
}

static void record_error(void *ctx, size_t index, const char *why) {
    otl_evaluation *e = ctx;
    e->predicted[index] = -1;
    otl_events_note(e->events, true, "skipped %s", why);
    e->errors++;
}

static onnxtl_status *map_classes(const otl_classifier *c, const otl_dataset *ds, int *to_model) {
    for (int i = 0; i < ds->n_classes; i++) {
        to_model[i] = -1;
        for (int j = 0; j < c->n_classes; j++)
            if (!strcmp(ds->classes[i], c->classes[j])) to_model[i] = j;
        if (to_model[i] < 0)
            return otl_error(ONNXTL_ERR_ARG, "%s: class '%s' is not one the model knows", ds->root, ds->classes[i]);
    }
    return NULL;
}

onnxtl_status *otl_evaluate(const char *model, const char *data, int batch, const onnxtl_options *opts,
                            const otl_events *events, otl_evaluation *e) {
    *e = (otl_evaluation){.events = events};
    otl_strlist paths = {0};
    onnxtl_status *st = otl_classifier_open(model, opts, NULL, &e->c);
    if (!st) st = otl_dataset_scan(data, &e->ds);
    if (!st) {
        e->to_model = calloc((size_t)e->ds->n_classes + 1, sizeof *e->to_model);
        e->confusion = calloc((size_t)e->c.n_classes * (size_t)e->c.n_classes, sizeof *e->confusion);
        e->predicted = calloc(e->ds->n_samples + 1, sizeof *e->predicted);
        if (!e->to_model || !e->confusion || !e->predicted) st = otl_nomem();
    }
    if (!st) st = map_classes(&e->c, e->ds, e->to_model);
    if (!st) st = otl_dataset_paths(e->ds, NULL, e->ds->n_samples, &paths);
    otl_classify_sink sink = {record, record_error, e};
    if (!st) st = otl_classify_files(&e->c, (const char *const *)paths.items, e->ds->n_samples, batch, &sink);
    otl_strlist_free(&paths);
    return st;
}

void otl_evaluation_free(otl_evaluation *e) {
    free(e->to_model);
    free(e->confusion);
    free(e->predicted);
    otl_dataset_free(e->ds);
    otl_classifier_close(&e->c);
}
