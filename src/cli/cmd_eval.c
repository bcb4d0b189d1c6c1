/* onnxtl eval: accuracy of a fine-tuned model on a labelled folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "evaluate.h"
#include "progress.h"

static const char eval_help[] =
    "usage: onnxtl eval MODEL DATA_DIR [--json] [--batch N] [--threads N] [--device D] [--precision P]\n"
    "\n"
    "Classifies every image of a labelled folder (the layouts extract reads; with\n"
    "splits, all of them) and prints accuracy, per-class precision and recall and\n"
    "the confusion matrix.  Folder classes are matched to the model's by name.\n"
    "--json prints one JSON object, with every image's prediction.\n";

static void print_text(const otl_evaluation *e, size_t scored) {
    const int n = e->c.n_classes;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) correct += e->confusion[i * n + i];
    printf("accuracy: %.4f (%lld of %zu images)", scored ? (double)correct / (double)scored : 0.0, (long long)correct, scored);
    if (e->errors) printf(", %zu unreadable skipped", e->errors);
    printf("\n%-16s %9s %9s %8s\n", "class", "precision", "recall", "support");
    for (int i = 0; i < n; i++) {
        int64_t tp = e->confusion[i * n + i], pred = 0, actual = 0;
        for (int j = 0; j < n; j++) pred += e->confusion[j * n + i], actual += e->confusion[i * n + j];
        printf("%-16s %9.4f %9.4f %8lld\n", e->c.classes[i], pred ? (double)tp / (double)pred : 0.0,
               actual ? (double)tp / (double)actual : 0.0, (long long)actual);
    }
    printf("confusion matrix (rows: true class, columns: predicted):\n%16s", "");
    for (int j = 0; j < n; j++) printf(" %8.8s", e->c.classes[j]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%-16s", e->c.classes[i]);
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

static void print_json(const otl_evaluation *e, size_t scored) {
    const int n = e->c.n_classes;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) correct += e->confusion[i * n + i];
    printf("{\"accuracy\": %.6f, \"images\": %zu, \"skipped\": %zu, \"classes\": [", scored ? (double)correct / (double)scored : 0.0,
           scored, e->errors);
    for (int i = 0; i < n; i++) printf("%s", i ? ", " : ""), json_str(e->c.classes[i]);
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
        json_str(e->c.classes[e->predicted[k]]);
        printf("}");
        first = 0;
    }
    printf("]}\n");
}

static onnxtl_status *evaluate(const char *model, const char *data, int batch, const onnxtl_options *opts, bool json) {
    cli_reporter rep;
    const otl_events events = cli_reporter_events(&rep, false);
    otl_evaluation e;
    onnxtl_status *st = otl_evaluate(model, data, batch, opts, &events, &e);
    if (!st) (json ? print_json : print_text)(&e, e.ds->n_samples - e.errors);
    otl_evaluation_free(&e);
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
