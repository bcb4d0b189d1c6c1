#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static void record(void *ctx, size_t index, const float *probs) {
    otl_evaluation *e = ctx;
    const int truth = e->to_model[e->ds->samples[index].label], n = e->c.n_classes;
    int best = 0;
    for (int j = 1; j < n; j++)
        if (probs[j] > probs[best]) best = j;
    /* The true class's place in the ranking the prediction came from: ties go
     * to the lower class, as the argmax above does, and NaN ranks last. */
    int above = isnan(probs[truth]) ? n : 0;
    for (int j = 0; j < n && above < n; j++)
        above += j != truth && (probs[j] > probs[truth] || (probs[j] == probs[truth] && j < truth));
    e->predicted[index] = best;
    e->confidence[index] = isfinite(probs[best]) ? probs[best] : 0.0f;
    e->true_rank[index] = best == truth ? 0 : above > 0 ? above : 1;
    e->confusion[truth * e->c.n_classes + best]++;
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
        e->confidence = calloc(e->ds->n_samples + 1, sizeof *e->confidence);
        e->true_rank = calloc(e->ds->n_samples + 1, sizeof *e->true_rank);
        if (!e->to_model || !e->confusion || !e->predicted || !e->confidence || !e->true_rank) st = otl_nomem();
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
    free(e->confidence);
    free(e->true_rank);
    otl_dataset_free(e->ds);
    otl_classifier_close(&e->c);
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

static void score_classes(const otl_evaluation *e, otl_eval_figures *f) {
    const int n = e->c.n_classes;
    for (int i = 0; i < n; i++) {
        int64_t predicted = 0, actual = 0, hit = e->confusion[i * n + i];
        for (int j = 0; j < n; j++) predicted += e->confusion[j * n + i], actual += e->confusion[i * n + j];
        otl_class_figures *c = &f->per_class[i];
        *c = (otl_class_figures){ratio((double)hit, (double)predicted), ratio((double)hit, (double)actual), 0, actual};
        c->f1 = ratio(2 * c->precision * c->recall, c->precision + c->recall);
        f->macro.precision += c->precision / n, f->macro.recall += c->recall / n, f->macro.f1 += c->f1 / n;
        f->macro.support += actual;
        const double w = ratio((double)actual, (double)f->scored);
        f->weighted.precision += w * c->precision, f->weighted.recall += w * c->recall, f->weighted.f1 += w * c->f1;
    }
    f->weighted.support = f->macro.support;
}

static void score_images(const otl_evaluation *e, otl_eval_figures *f) {
    size_t top1 = 0, top5 = 0;
    for (size_t k = 0; k < e->ds->n_samples; k++) {
        if (e->predicted[k] < 0) continue;
        const bool right = e->true_rank[k] == 0;
        top1 += right, top5 += e->true_rank[k] < 5;
        int b = (int)(e->confidence[k] * OTL_RELIABILITY_BINS);
        b = b < 0 ? 0 : b >= OTL_RELIABILITY_BINS ? OTL_RELIABILITY_BINS - 1 : b;
        f->bins[b].count++;
        f->bins[b].confidence += e->confidence[k];
        f->bins[b].accuracy += right;
    }
    f->top1 = ratio((double)top1, (double)f->scored);
    f->top5 = f->n_classes >= 5 ? ratio((double)top5, (double)f->scored) : -1;
    for (int b = 0; b < OTL_RELIABILITY_BINS; b++) {
        const double count = (double)f->bins[b].count;
        f->bins[b].confidence = ratio(f->bins[b].confidence, count);
        f->bins[b].accuracy = ratio(f->bins[b].accuracy, count);
        f->ece += ratio(count, (double)f->scored) * fabs(f->bins[b].accuracy - f->bins[b].confidence);
    }
}

onnxtl_status *otl_evaluation_figures(const otl_evaluation *e, otl_eval_figures *f) {
    *f = (otl_eval_figures){.scored = e->ds->n_samples - e->errors, .n_classes = e->c.n_classes};
    if (!(f->per_class = calloc((size_t)f->n_classes, sizeof *f->per_class))) return otl_nomem();
    score_classes(e, f);
    score_images(e, f);
    return NULL;
}

void otl_eval_figures_free(otl_eval_figures *f) {
    free(f->per_class);
    f->per_class = NULL;
}
