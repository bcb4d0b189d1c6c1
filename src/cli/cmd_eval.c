/* onnxtl eval: accuracy of a fine-tuned model on a labelled folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "evaluate.h"
#include "json.h"
#include "progress.h"
#include "report.h"

static const char eval_help[] =
    "usage: onnxtl eval MODEL DATA_DIR [--json] [--report FILE.html] [options]\n"
    "\n"
    "Classifies every image of a labelled folder (the layouts extract reads; with\n"
    "splits, all of them) and prints top-1 (and top-5, with 5 classes or more)\n"
    "accuracy as torchvision's reference scripts do, per-class precision, recall\n"
    "and F1 in scikit-learn's classification_report layout, the expected\n"
    "calibration error (10 equal bins of confidence) and the confusion matrix.\n"
    "Folder classes are matched to the model's by name.  --json prints one JSON\n"
    "object with the same figures, the reliability bins and every image's\n"
    "prediction and probability.\n"
    "\n"
    "options:\n"
    "  --json           print the figures as one JSON object\n"
    "  --report FILE    also write a self-contained HTML report: the figures, the\n"
    "                   confusion matrix in colour, a reliability diagram and the\n"
    "                   misclassified photos as thumbnails, the most confident first\n"
    "  --report-photos N  at most N thumbnails in the report (default 60)\n"
    "  --batch N        images per run (default 16)\n"
    "  --threads N      worker threads (default: all cores)\n"
    CLI_DEVICE_HELP;

/* torchvision's reference scripts' line, then scikit-learn's classification_report layout (digits=4). */
static void print_report(const otl_evaluation *e, const otl_eval_figures *f) {
    static const char *const heads[] = {"precision", "recall", "f1-score", "support"};
    const int n = f->n_classes;
    printf("Acc@1 %.3f", 100 * f->top1);
    if (f->top5 >= 0) printf(" Acc@5 %.3f", 100 * f->top5);
    printf(" (%zu images%s)\n\n", f->scored, e->errors ? ", unreadable ones skipped" : "");
    int width = (int)strlen("weighted avg");
    for (int i = 0; i < n; i++) width = (int)strlen(e->c.classes[i]) > width ? (int)strlen(e->c.classes[i]) : width;
    printf("%*s ", width, "");
    for (int h = 0; h < 4; h++) printf(" %9s", heads[h]);
    printf("\n\n");
    for (int i = 0; i < n; i++) {
        const otl_class_figures *c = &f->per_class[i];
        printf("%*s  %9.4f %9.4f %9.4f %9lld\n", width, e->c.classes[i], c->precision, c->recall, c->f1, (long long)c->support);
    }
    printf("\n%*s  %9s %9s %9.4f %9lld\n", width, "accuracy", "", "", f->top1, (long long)f->macro.support);
    const otl_class_figures *avg[2] = {&f->macro, &f->weighted};
    for (int a = 0; a < 2; a++)
        printf("%*s  %9.4f %9.4f %9.4f %9lld\n", width, a ? "weighted avg" : "macro avg", avg[a]->precision,
               avg[a]->recall, avg[a]->f1, (long long)avg[a]->support);
    printf("\nexpected calibration error (%d bins): %.4f\n", OTL_RELIABILITY_BINS, f->ece);
}

static void print_text(const otl_evaluation *e, const otl_eval_figures *f) {
    const int n = f->n_classes;
    print_report(e, f);
    printf("confusion matrix (rows: true class, columns: predicted):\n%16s", "");
    for (int j = 0; j < n; j++) printf(" %8.8s", e->c.classes[j]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%-16s", e->c.classes[i]);
        for (int j = 0; j < n; j++) printf(" %8lld", (long long)e->confusion[i * n + j]);
        printf("\n");
    }
}

static void json_class(cli_json *j, const char *key, const char *name, const otl_class_figures *c) {
    cli_json_object(j, key);
    if (name) cli_json_str(j, "class", name);
    cli_json_num(j, "precision", c->precision);
    cli_json_num(j, "recall", c->recall);
    cli_json_num(j, "f1", c->f1);
    cli_json_int(j, "support", (long long)c->support);
    cli_json_close(j);
}

static void print_json(const otl_evaluation *e, const otl_eval_figures *f) {
    const int n = f->n_classes;
    cli_json j = cli_json_start(stdout);
    cli_json_object(&j, NULL);
    cli_json_num(&j, "accuracy", f->top1);
    cli_json_num(&j, "top1", f->top1);
    if (f->top5 >= 0) cli_json_num(&j, "top5", f->top5);
    cli_json_int(&j, "images", (long long)f->scored);
    cli_json_int(&j, "skipped", (long long)e->errors);
    cli_json_num(&j, "ece", f->ece);
    cli_json_array(&j, "classes");
    for (int i = 0; i < n; i++) cli_json_str(&j, NULL, e->c.classes[i]);
    cli_json_close(&j);
    cli_json_array(&j, "per_class");
    for (int i = 0; i < n; i++) json_class(&j, NULL, e->c.classes[i], &f->per_class[i]);
    cli_json_close(&j);
    json_class(&j, "macro_avg", NULL, &f->macro);
    json_class(&j, "weighted_avg", NULL, &f->weighted);
    cli_json_array(&j, "reliability");
    for (int b = 0; b < OTL_RELIABILITY_BINS; b++) {
        cli_json_object(&j, NULL);
        cli_json_int(&j, "count", (long long)f->bins[b].count);
        cli_json_num(&j, "confidence", f->bins[b].confidence);
        cli_json_num(&j, "accuracy", f->bins[b].accuracy);
        cli_json_close(&j);
    }
    cli_json_close(&j);
    cli_json_array(&j, "confusion");
    for (int i = 0; i < n; i++) {
        cli_json_array(&j, NULL);
        for (int k = 0; k < n; k++) cli_json_int(&j, NULL, (long long)e->confusion[i * n + k]);
        cli_json_close(&j);
    }
    cli_json_close(&j);
    cli_json_array(&j, "predictions");
    for (size_t k = 0; k < e->ds->n_samples; k++) {
        if (e->predicted[k] < 0) continue;
        cli_json_object(&j, NULL);
        cli_json_str(&j, "path", e->ds->samples[k].path);
        cli_json_str(&j, "label", e->ds->classes[e->ds->samples[k].label]);
        cli_json_str(&j, "predicted", e->c.classes[e->predicted[k]]);
        cli_json_num(&j, "probability", e->confidence[k]);
        cli_json_close(&j);
    }
    cli_json_close(&j);
    cli_json_close(&j);
}

typedef struct {
    int batch;
    bool json;
    const char *report;
    int report_photos;
} eval_options;

static onnxtl_status *evaluate(const char *model, const char *data, const eval_options *o, const onnxtl_options *opts) {
    cli_reporter rep;
    const otl_events events = cli_reporter_events(&rep, false);
    otl_evaluation e;
    otl_eval_figures f = {0};
    onnxtl_status *st = otl_evaluate(model, data, o->batch, opts, &events, &e);
    if (!st) st = otl_evaluation_figures(&e, &f);
    if (!st) (o->json ? print_json : print_text)(&e, &f);
    if (!st && o->report) st = otl_report_eval(o->report, &e, &f, model, data, o->report_photos);
    otl_eval_figures_free(&f);
    otl_evaluation_free(&e);
    return st;
}

int cmd_eval(int argc, char **argv) {
    if (cli_help_asked(argc, argv, eval_help)) return 0;
    const char *pos[2] = {0};
    int n_pos = 0, rc = 0;
    eval_options o = {.batch = 16, .report_photos = 60};
    onnxtl_options opts = {.log = cli_log_line};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) o.json = true;
        else if (a[0] == '-' && i + 1 < argc && cli_device_option("eval", a, argv[i + 1], &opts, &rc)) {
            if (rc) return rc;
            i++;
        } else if (!strcmp(a, "--report")) {
            if (i + 1 >= argc) return cli_usage("eval", "%s needs a value", a);
            o.report = argv[++i];
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--threads") || !strcmp(a, "--report-photos")) {
            if (i + 1 >= argc) return cli_usage("eval", "%s needs a value", a);
            int *v = !strcmp(a, "--batch") ? &o.batch : !strcmp(a, "--threads") ? &opts.threads : &o.report_photos;
            if (!cli_parse_int("eval", a, argv[++i], !strcmp(a, "--report-photos") ? 0 : 1, 100000, v)) return EXIT_USAGE;
        } else if (a[0] == '-') return cli_usage("eval", "unknown option '%s'", a);
        else if (n_pos < 2) pos[n_pos++] = a;
        else return cli_usage("eval", "unexpected argument '%s'", a);
    }
    if (n_pos != 2) return cli_usage("eval", "expected MODEL and DATA_DIR");
    onnxtl_status *st = evaluate(pos[0], pos[1], &o, &opts);
    return st ? cli_fail(st) : 0;
}
