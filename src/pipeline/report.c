#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "image.h"
#include "status.h"
#include "strlist.h"

#define THUMBNAIL_SIDE 160

/* A page is written whole or not at all. */
typedef otl_atomic_file page;

static const char style[] =
    "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#1f2933}"
    "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #d5dbe1}"
    "table{border-collapse:collapse}td,th{padding:.3em .7em;text-align:right}th{font-weight:600}"
    "td.name,th.name{text-align:left}table.figures td{font-size:1.3em;font-weight:600}"
    ".grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;width:170px;font-size:.8em}"
    "figure img{display:block;max-width:160px;max-height:160px;border:1px solid #ccc}"
    "svg text{font:12px system-ui,sans-serif;fill:#1f2933}.muted{color:#61707d}";

/* Text for HTML element content and attribute values alike. */
static void put_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void put_base64(FILE *f, const uint8_t *b, size_t n) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        fputc(digits[v >> 18 & 63], f);
        fputc(digits[v >> 12 & 63], f);
        fputc(i + 1 < n ? digits[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? digits[v & 63] : '=', f);
    }
}

/* A figure a test reads back: <td data-figure="KEY">VALUE</td>. */
static void put_figure(FILE *f, const char *key, const char *sub, double v) {
    fputs("<td data-figure=\"", f);
    put_text(f, key);
    if (sub) fputc(':', f), put_text(f, sub);
    fprintf(f, "\">%.4f</td>", v);
}

static onnxtl_status *page_open(page *p, const char *path, const char *title, const char *subject) {
    OTL_TRY(otl_atomic_open(path, p));
    fprintf(p->f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s: ", title);
    put_text(p->f, subject);
    fprintf(p->f, "</title><style>%s</style></head><body>\n<h1>%s: ", style, title);
    put_text(p->f, subject);
    fputs("</h1>\n", p->f);
    return NULL;
}

static onnxtl_status *page_close(page *p, onnxtl_status *st) {
    if (p->f) fputs("</body></html>\n", p->f);
    return otl_atomic_close(p, st);
}

/* A plot area in SVG user units, and the data range it shows. */
typedef struct {
    FILE *f;
    double x0, x1, y0, y1;
} plot;

enum { PLOT_W = 520, PLOT_H = 260, LEFT = 60, TOP = 20, SVG_W = 720, SVG_H = 320 };

static double px(const plot *p, double x) { return LEFT + (x - p->x0) / (p->x1 - p->x0) * PLOT_W; }
static double py(const plot *p, double y) { return TOP + PLOT_H - (y - p->y0) / (p->y1 - p->y0) * PLOT_H; }

static void svg_axes(const plot *p, const char *title, const char *xlabel, const char *ylabel) {
    FILE *f = p->f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\"><title>%s</title>",
            SVG_W, SVG_H, title);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#f7f9fb\" stroke=\"#c5ccd3\"/>", LEFT, TOP,
            PLOT_W, PLOT_H);
    for (int i = 0; i <= 4; i++) {
        const double x = p->x0 + (p->x1 - p->x0) * i / 4, y = p->y0 + (p->y1 - p->y0) * i / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>", px(p, x), TOP + PLOT_H + 16, x);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>", LEFT - 6, py(p, y) + 4, y);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e1e6ea\"/>", LEFT, LEFT + PLOT_W, py(p, y),
                py(p, y));
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>", LEFT + PLOT_W / 2, TOP + PLOT_H + 34, xlabel);
    fprintf(f, "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">%s</text>", TOP + PLOT_H / 2, ylabel);
}

typedef struct {
    const char *name, *colour;
    const double *x, *y;
    size_t n;
    double width;
} series;

static void svg_line(const plot *p, const series *s, int legend_row) {
    if (!s->n) return;
    fprintf(p->f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" points=\"", s->colour, s->width);
    for (size_t i = 0; i < s->n; i++) /* a diverged loss (inf, NaN) has no place on the chart */
        if (isfinite(s->y[i])) fprintf(p->f, "%.1f,%.1f ", px(p, s->x[i]), py(p, s->y[i]));
    fputs("\"/>", p->f);
    const int ly = TOP + 10 + 18 * legend_row;
    fprintf(p->f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>", LEFT + PLOT_W + 14,
            LEFT + PLOT_W + 34, ly, ly, s->colour);
    fprintf(p->f, "<text x=\"%d\" y=\"%d\">%s</text>", LEFT + PLOT_W + 40, ly + 4, s->name);
}

static void range_of(const series *s, int n, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i])) *lo = fmin(*lo, s[k].y[i]), *hi = fmax(*hi, s[k].y[i]);
    if (!isfinite(*lo)) *lo = 0, *hi = 1;            /* nothing finite to show */
    else if (!(*hi > *lo)) *lo -= 0.5, *hi += 0.5; /* flat: a band around it */
}

static void svg_chart(FILE *f, const char *title, const char *xlabel, const char *ylabel, const series *s, int n,
                      double x0, double x1) {
    plot p = {f, x0, x1 > x0 ? x1 : x0 + 1, 0, 0};
    range_of(s, n, &p.y0, &p.y1);
    svg_axes(&p, title, xlabel, ylabel);
    for (int k = 0; k < n; k++) svg_line(&p, &s[k], k);
    fputs("</svg>\n", f);
}

/* Bars of observed accuracy per confidence bin, against the diagonal a
 * calibrated model would follow. */
static void svg_reliability(FILE *f, const otl_eval_figures *fig) {
    const plot p = {f, 0, 1, 0, 1};
    svg_axes(&p, "Reliability diagram", "predicted probability (confidence)", "observed accuracy");
    const double w = (double)PLOT_W / OTL_RELIABILITY_BINS;
    for (int b = 0; b < OTL_RELIABILITY_BINS; b++) {
        if (!fig->bins[b].count) continue;
        const double top = py(&p, fig->bins[b].accuracy);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#3b82f6\" fill-opacity=\"0.75\">"
                   "<title>%lld images, confidence %.3f, accuracy %.3f</title></rect>",
                LEFT + b * w + 1, top, w - 2, TOP + PLOT_H - top, (long long)fig->bins[b].count, fig->bins[b].confidence,
                fig->bins[b].accuracy);
    }
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dc2626\" stroke-dasharray=\"5 4\"/>",
            px(&p, 0), py(&p, 0), px(&p, 1), py(&p, 1));
    fputs("</svg>\n", f);
}

static void eval_summary(FILE *f, const otl_evaluation *e, const otl_eval_figures *fig, const char *data) {
    fputs("<p class=\"muted\">", f);
    put_text(f, data);
    fprintf(f, ": %zu images classified", fig->scored);
    if (e->errors) fprintf(f, ", %zu unreadable skipped", e->errors);
    fputs("</p>\n<table class=\"figures\"><tr><th class=\"name\">Acc@1</th>", f);
    put_figure(f, "top1", NULL, fig->top1);
    if (fig->top5 >= 0) fputs("<th class=\"name\">Acc@5</th>", f), put_figure(f, "top5", NULL, fig->top5);
    fprintf(f, "<th class=\"name\">expected calibration error (%d bins)</th>", OTL_RELIABILITY_BINS);
    put_figure(f, "ece", NULL, fig->ece);
    fputs("</tr></table>\n", f);
}

static void class_row(FILE *f, const char *name, const char *key, const otl_class_figures *c) {
    fputs("<tr><td class=\"name\">", f);
    put_text(f, name);
    fputs("</td>", f);
    put_figure(f, "precision", key, c->precision);
    put_figure(f, "recall", key, c->recall);
    put_figure(f, "f1", key, c->f1);
    fprintf(f, "<td>%lld</td></tr>\n", (long long)c->support);
}

static void eval_classes(FILE *f, const otl_evaluation *e, const otl_eval_figures *fig) {
    fputs("<h2>Per class</h2>\n<table><tr><th class=\"name\">class</th><th>precision</th><th>recall</th>"
          "<th>F1</th><th>support</th></tr>\n", f);
    for (int i = 0; i < fig->n_classes; i++) class_row(f, e->c.classes[i], e->c.classes[i], &fig->per_class[i]);
    class_row(f, "macro avg", "macro avg", &fig->macro);
    class_row(f, "weighted avg", "weighted avg", &fig->weighted);
    fputs("</table>\n", f);
}

/* Each cell shaded by its share of the true class's images: green on the diagonal, red off it. */
static void eval_confusion(FILE *f, const otl_evaluation *e, const otl_eval_figures *fig) {
    const int n = fig->n_classes;
    fputs("<h2>Confusion matrix</h2>\n<p class=\"muted\">rows: true class; columns: predicted class</p>\n"
          "<table><tr><th></th>", f);
    for (int j = 0; j < n; j++) fputs("<th>", f), put_text(f, e->c.classes[j]), fputs("</th>", f);
    fputs("</tr>\n", f);
    for (int i = 0; i < n; i++) {
        fputs("<tr><th class=\"name\">", f);
        put_text(f, e->c.classes[i]);
        fputs("</th>", f);
        for (int j = 0; j < n; j++) {
            const int64_t v = e->confusion[i * n + j], row = fig->per_class[i].support;
            fprintf(f, "<td data-figure=\"confusion:%d:%d\" style=\"background:rgba(%s,%.3f)\">%lld</td>", i, j,
                    i == j ? "22,163,74" : "220,38,38", row ? 0.85 * (double)v / (double)row : 0.0, (long long)v);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static int more_confident(const void *a, const void *b, void *ctx) {
    const float *conf = ctx;
    const float x = conf[*(const size_t *)a], y = conf[*(const size_t *)b];
    return (x < y) - (x > y);
}

static onnxtl_status *eval_mistakes(FILE *f, const otl_evaluation *e, int max_photos) {
    size_t n = 0, *wrong = calloc(e->ds->n_samples + 1, sizeof *wrong);
    if (!wrong) return otl_nomem();
    for (size_t k = 0; k < e->ds->n_samples; k++)
        if (e->predicted[k] >= 0 && e->true_rank[k] > 0) wrong[n++] = k;
    qsort_r(wrong, n, sizeof *wrong, more_confident, e->confidence);
    const size_t shown = n < (size_t)max_photos ? n : (size_t)max_photos;
    fprintf(f, "<h2>Misclassified photos</h2>\n<p class=\"muted\">%zu of %zu, the most confident mistakes first</p>\n"
               "<div class=\"grid\">\n", shown, n);
    otl_strlist paths = {0};
    otl_jpeg_decoder *d = NULL;
    onnxtl_status *st = otl_dataset_paths(e->ds, wrong, shown, &paths);
    if (!st) st = otl_jpeg_decoder_create(0, &d);
    for (size_t i = 0; i < shown && !st; i++) {
        const size_t k = wrong[i];
        uint8_t *jpeg;
        size_t len;
        if ((st = otl_jpeg_thumbnail(d, paths.items[i], THUMBNAIL_SIDE, &jpeg, &len))) break;
        fputs("<figure><img alt=\"", f);
        put_text(f, e->ds->samples[k].path);
        fputs("\" src=\"data:image/jpeg;base64,", f);
        put_base64(f, jpeg, len);
        free(jpeg);
        fputs("\"><figcaption>", f);
        put_text(f, e->ds->samples[k].path);
        fputs("<br>true: ", f);
        put_text(f, e->ds->classes[e->ds->samples[k].label]);
        fputs(", predicted: ", f);
        put_text(f, e->c.classes[e->predicted[k]]);
        fprintf(f, " (%.3f)</figcaption></figure>\n", e->confidence[k]);
    }
    fputs("</div>\n", f);
    otl_jpeg_decoder_release(d);
    otl_strlist_free(&paths);
    free(wrong);
    return st;
}

onnxtl_status *otl_report_eval(const char *path, const otl_evaluation *e, const otl_eval_figures *fig,
                               const char *model, const char *data, int max_photos) {
    page p;
    onnxtl_status *st = page_open(&p, path, "onnxtl eval", model);
    if (!st) {
        eval_summary(p.f, e, fig, data);
        eval_classes(p.f, e, fig);
        eval_confusion(p.f, e, fig);
        fputs("<h2>Calibration</h2>\n", p.f);
        svg_reliability(p.f, fig);
        st = eval_mistakes(p.f, e, max_photos);
    }
    return otl_error_wrap(page_close(&p, st), "%s", path);
}

/* Per-epoch curves, and the steps' losses at their fraction of an epoch. */
static onnxtl_status *training_charts(FILE *f, const otl_train_history *h, const char *split) {
    const size_t n = (size_t)h->n_epochs, steps = (size_t)h->n_steps;
    double *v = malloc(sizeof(double) * (5 * n + 2 * steps + 1));
    if (!v) return otl_nomem();
    double *epoch = v, *tl = v + n, *ta = v + 2 * n, *el = v + 3 * n, *ea = v + 4 * n, *sx = v + 5 * n, *sy = sx + steps;
    const bool eval = n && h->epochs[0].eval_loss >= 0;
    for (size_t i = 0; i < n; i++)
        epoch[i] = h->epochs[i].epoch, tl[i] = h->epochs[i].train_loss, ta[i] = h->epochs[i].train_acc,
        el[i] = h->epochs[i].eval_loss, ea[i] = h->epochs[i].eval_acc;
    for (size_t s = 0; s < steps; s++) sx[s] = (double)(s + 1) * (double)n / (double)steps, sy[s] = h->step_loss[s];
    char eval_loss[32], eval_acc[32];
    snprintf(eval_loss, sizeof eval_loss, "%s loss", split);
    snprintf(eval_acc, sizeof eval_acc, "%s accuracy", split);
    const series loss[3] = {{"step loss", "#93c5fd", sx, sy, steps, 1}, {"train loss", "#1d4ed8", epoch, tl, n, 2.5},
                            {eval_loss, "#ea580c", epoch, el, eval ? n : 0, 2.5}};
    const series acc[2] = {{"train accuracy", "#1d4ed8", epoch, ta, n, 2.5},
                           {eval_acc, "#ea580c", epoch, ea, eval ? n : 0, 2.5}};
    fputs("<h2>Loss</h2>\n", f);
    svg_chart(f, "Loss", "epoch", "cross-entropy", loss, 3, 0, (double)n);
    fputs("<h2>Accuracy</h2>\n", f);
    svg_chart(f, "Accuracy", "epoch", "accuracy", acc, 2, 1, (double)n);
    free(v);
    return NULL;
}

static void training_table(FILE *f, const otl_train_history *h, const char *split) {
    fprintf(f, "<h2>Epochs</h2>\n<table><tr><th>epoch</th><th>train loss</th><th>train accuracy</th>"
               "<th>%s loss</th><th>%s accuracy</th></tr>\n", split, split);
    for (int i = 0; i < h->n_epochs; i++) {
        const otl_epoch_figures *e = &h->epochs[i];
        char key[16];
        snprintf(key, sizeof key, "%d", e->epoch);
        fprintf(f, "<tr><td>%d</td>", e->epoch);
        put_figure(f, "train_loss", key, e->train_loss);
        put_figure(f, "train_accuracy", key, e->train_acc);
        if (e->eval_loss >= 0) put_figure(f, "eval_loss", key, e->eval_loss), put_figure(f, "eval_accuracy", key, e->eval_acc);
        else fputs("<td></td><td></td>", f);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

onnxtl_status *otl_report_training(const char *path, const otl_train_history *h, const char *features,
                                   const char *split) {
    page p;
    onnxtl_status *st = page_open(&p, path, "onnxtl fit-head", features);
    if (!st) {
        fprintf(p.f, "<p class=\"muted\">%d epochs, %lld steps</p>\n", h->n_epochs, (long long)h->n_steps);
        st = training_charts(p.f, h, split ? split : "test");
        training_table(p.f, h, split ? split : "test");
    }
    return otl_error_wrap(page_close(&p, st), "%s", path);
}
