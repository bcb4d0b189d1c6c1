/* onnxtl eval: accuracy of a fine-tuned model on a labelled folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "cli.h"
#include "dataset.h"
#include "status.h"

static const char eval_help[] =
    "usage: onnxtl eval MODEL DATA_DIR [--json] [--batch N] [--threads N] [--device D] [--precision P]\n"
    "\n"
    "Classifies every image of a labelled folder (the layouts extract reads; with\n"
    "splits, all of them) and prints accuracy, per-class precision and recall and\n"
    "the confusion matrix.  Folder classes are matched to the model's by name.\n"
    "--json prints one JSON object, with every image's prediction.\n";

typedef struct {
    const otl_classifier *c;
    const otl_dataset *ds;
    const int *to_model; /* dataset label -> model class */
    int64_t *confusion;  /* [true][predicted] over model classes */
    int *predicted;      /* per sample, -1 if unreadable */
    size_t errors;
} eval_ctx;

static void record(void *ctx, size_t index, const float *probs) {
    eval_ctx *e = ctx;
    int best = 0;
    for (int j = 1; j < e->c->n_classes; j++)
        if (probs[j] > probs[best]) best = j;
    e->predicted[index] = best;
    e->confusion[e->to_model[e->ds->samples[index].label] * e->c->n_classes + best]++;
}

static void record_error(void *ctx, size_t index, const char *why) {
    eval_ctx *e = ctx;
    e->predicted[index] = -1;
    fprintf(stderr, "onnxtl: warning: skipped %s\n", why);
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

static void print_text(const eval_ctx *e, size_t scored) {
    const int n = e->c->n_classes;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) correct += e->confusion[i * n + i];
    printf("accuracy: %.4f (%lld of %zu images)", scored ? (double)correct / (double)scored : 0.0, (long long)correct, scored);
    if (e->errors) printf(", %zu unreadable skipped", e->errors);
    printf("\n%-16s %9s %9s %8s\n", "class", "precision", "recall", "support");
    for (int i = 0; i < n; i++) {
        int64_t tp = e->confusion[i * n + i], pred = 0, actual = 0;
        for (int j = 0; j < n; j++) pred += e->confusion[j * n + i], actual += e->confusion[i * n + j];
        printf("%-16s %9.4f %9.4f %8lld\n", e->c->classes[i], pred ? (double)tp / (double)pred : 0.0,
               actual ? (double)tp / (double)actual : 0.0, (long long)actual);
    }
    printf("confusion matrix (rows: true class, columns: predicted):\n%16s", "");
    for (int j = 0; j < n; j++) printf(" %8.8s", e->c->classes[j]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%-16s", e->c->classes[i]);
        for (int j = 0; j < n; j++) printf(" %8lld", (long long)e->confusion[i * n + j]);
        printf("\n");
    }
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", (unsigned char)*s);
        else putchar(*s);
    }
    putchar('"');
}

static void print_json(const eval_ctx *e, size_t scored) {
    const int n = e->c->n_classes;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) correct += e->confusion[i * n + i];
    printf("{\"accuracy\": %.6f, \"images\": %zu, \"skipped\": %zu, \"classes\": [", scored ? (double)correct / (double)scored : 0.0,
           scored, e->errors);
    for (int i = 0; i < n; i++) printf("%s", i ? ", " : ""), json_str(e->c->classes[i]);
    printf("], \"confusion\": [");
    for (int i = 0; i < n; i++) {
        printf("%s[", i ? ", " : "");
        for (int j = 0; j < n; j++) printf("%s%lld", j ? ", " : "", (long long)e->confusion[i * n + j]);
        printf("]");
    }
    printf("], \"predictions\": [");
    for (size_t k = 0, first = 1; k < e->ds->n_samples; k++) {
        if (e->predicted[k] < 0) continue;
        printf("%s{\"path\": ", first ? "" : ", ");
        json_str(e->ds->samples[k].path);
        printf(", \"label\": ");
        json_str(e->ds->classes[e->ds->samples[k].label]);
        printf(", \"predicted\": ");
        json_str(e->c->classes[e->predicted[k]]);
        printf("}");
        first = 0;
    }
    printf("]}\n");
}

static onnxtl_status *evaluate(const char *model, const char *data, int batch, const onnxtl_options *opts, bool json) {
    otl_classifier c = {0};
    otl_dataset *ds = NULL;
    otl_strlist paths = {0};
    eval_ctx e = {0};
    onnxtl_status *st = otl_classifier_open(model, opts, NULL, NULL, NULL, NULL, &c);
    if (!st) st = otl_dataset_scan(data, &ds);
    if (!st) {
        e = (eval_ctx){&c, ds, calloc((size_t)ds->n_classes, sizeof(int)),
                       calloc((size_t)c.n_classes * (size_t)c.n_classes, sizeof(int64_t)),
                       calloc(ds->n_samples, sizeof(int)), 0};
        if (!e.to_model || !e.confusion || !e.predicted) st = otl_nomem();
    }
    if (!st) st = map_classes(&c, ds, (int *)e.to_model);
    if (!st) st = otl_dataset_paths(ds, NULL, ds->n_samples, &paths);
    otl_classify_sink sink = {record, record_error, &e};
    if (!st) st = otl_classify_files(&c, (const char *const *)paths.items, ds->n_samples, batch, &sink);
    if (!st) (json ? print_json : print_text)(&e, ds->n_samples - e.errors);
    otl_strlist_free(&paths);
    free((int *)e.to_model);
    free(e.confusion);
    free(e.predicted);
    otl_dataset_free(ds);
    otl_classifier_close(&c);
    return st;
}

int cmd_eval(int argc, char **argv) {
    if (cli_help_asked(argc, argv, eval_help)) return 0;
    const char *pos[2] = {0};
    int n_pos = 0, batch = 16, rc = 0;
    onnxtl_options opts = {.log = cli_log_line};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-' && i + 1 < argc && cli_device_option("eval", a, argv[i + 1], &opts, &rc)) {
            if (rc) return rc;
            i++;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) return cli_usage("eval", "%s needs a value", a);
            if (!cli_parse_int("eval", a, argv[++i], 1, 4096, !strcmp(a, "--batch") ? &batch : &opts.threads)) return EXIT_USAGE;
        } else if (a[0] == '-') return cli_usage("eval", "unknown option '%s'", a);
        else if (n_pos < 2) pos[n_pos++] = a;
        else return cli_usage("eval", "unexpected argument '%s'", a);
    }
    if (n_pos != 2) return cli_usage("eval", "expected MODEL and DATA_DIR");
    onnxtl_status *st = evaluate(pos[0], pos[1], batch, &opts, json);
    return st ? cli_fail(st) : 0;
}
