/* onnxtl run: classify JPEG files with a fine-tuned model. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "classify.h"
#include "cli.h"
#include "json.h"
#include "status.h"
#include "strlist.h"

static const char run_help[] =
    "usage: onnxtl run MODEL IMAGE_OR_DIR... [options]\n"
    "\n"
    "Classifies JPEG files (folders are searched recursively) with a model from\n"
    "fit-head, preprocessing them as extract did (read from the model's metadata).\n"
    "Prints one line per image: path<TAB>class<TAB>probability.\n"
    "\n"
    "options:\n"
    "  --top K          the K most likely classes per line (default 1)\n"
    "  --json           one JSON object per line instead\n"
    "  --batch N        images per run (default 16)\n"
    "  --threads N      default: all cores\n"
    "preprocessing, over the model's own (what fit-head recorded, or what the model states):\n"
    CLI_PREPROCESS_HELP CLI_DEVICE_HELP
    "\n"
    "A bad image gets a message naming it; the others are still classified and\n"
    "the exit status is 1.\n";


static bool image_name(const char *path) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path, *dot = strrchr(base, '.');
    return base[0] != '.' && dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Image files under dir, recursively, in sorted order. */
static onnxtl_status *collect_dir(otl_strlist *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return otl_error(ONNXTL_ERR_IO, "%s: cannot read folder", dir);
    otl_strlist here = {0};
    onnxtl_status *st = NULL;
    for (struct dirent *e; !st && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char full[4096];
        if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < (int)sizeof full) st = otl_strlist_push(&here, full);
    }
    closedir(d);
    otl_strlist_sort(&here);
    for (size_t i = 0; !st && i < here.n; i++) {
        struct stat sb;
        if (stat(here.items[i], &sb) == 0 && S_ISDIR(sb.st_mode)) st = collect_dir(l, here.items[i]);
        else if (image_name(here.items[i])) st = otl_strlist_push(l, here.items[i]);
    }
    otl_strlist_free(&here);
    return st;
}

typedef struct {
    const otl_classifier *c;
    char *const *paths;
    int top;
    bool json;
    size_t errors;
} run_ctx;

static bool chosen(const int *order, int k, int j) {
    for (int i = 0; i < k; i++)
        if (order[i] == j) return true;
    return false;
}

static void print_prediction(void *ctx, size_t index, const float *probs) {
    run_ctx *r = ctx;
    int order[64], n = r->c->n_classes < r->top ? r->c->n_classes : r->top;
    for (int k = 0; k < n; k++) { /* top-k by selection: k <= 64 */
        int best = -1;
        for (int j = 0; j < r->c->n_classes; j++)
            if (!chosen(order, k, j) && (best < 0 || probs[j] > probs[best])) best = j;
        order[k] = best;
    }
    if (r->json) { /* one object a line */
        cli_json j = cli_json_start(stdout);
        cli_json_object(&j, NULL);
        cli_json_str(&j, "path", r->paths[index]);
        cli_json_array(&j, "predictions");
        for (int k = 0; k < n; k++) {
            cli_json_object(&j, NULL);
            cli_json_str(&j, "class", r->c->classes[order[k]]);
            cli_json_num(&j, "probability", probs[order[k]]);
            cli_json_close(&j);
        }
        cli_json_close(&j);
        cli_json_close(&j);
    } else {
        printf("%s", r->paths[index]);
        for (int k = 0; k < n; k++) printf("\t%s\t%.6f", r->c->classes[order[k]], probs[order[k]]);
        printf("\n");
    }
}

static void print_error(void *ctx, size_t index, const char *why) {
    run_ctx *r = ctx;
    (void)index;
    cli_message("error", why);
    r->errors++;
}

int cmd_run(int argc, char **argv) {
    if (cli_help_asked(argc, argv, run_help)) return 0;
    const char *model = NULL;
    otl_preprocess_spec pre = {0};
    int top = 1, batch = 16;
    onnxtl_options opts = {.log = cli_log_line};
    bool json = false;
    otl_strlist inputs = {0};
    onnxtl_status *st = NULL;
    for (int i = 1; i < argc && !st; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (a[0] != '-') {
            if (model) st = otl_strlist_push(&inputs, a);
            else model = a;
        } else {
            if (i + 1 >= argc) return cli_usage("run", "%s needs a value", a);
            const char *v = argv[++i];
            int ok = 1, rc = 0;
            if (cli_device_option("run", a, v, &opts, &rc) || cli_preprocess_option("run", a, v, &pre, &rc)) ok = !rc;
            else if (!strcmp(a, "--top")) ok = cli_parse_int("run", a, v, 1, 64, &top);
            else if (!strcmp(a, "--batch")) ok = cli_parse_int("run", a, v, 1, 4096, &batch);
            else if (!strcmp(a, "--threads")) ok = cli_parse_int("run", a, v, 1, 1024, &opts.threads);
            else return cli_usage("run", "unknown option '%s'", a);
            if (!ok) return EXIT_USAGE;
        }
    }
    if (!st && (!model || !inputs.n)) return cli_usage("run", "expected MODEL and at least one image or folder");
    otl_strlist files = {0};
    for (size_t i = 0; !st && i < inputs.n; i++) {
        struct stat sb;
        bool dir = stat(inputs.items[i], &sb) == 0 && S_ISDIR(sb.st_mode);
        st = dir ? collect_dir(&files, inputs.items[i]) : otl_strlist_push(&files, inputs.items[i]);
    }
    otl_classifier c = {0};
    if (!st) st = otl_classifier_open(model, &opts, &pre, &c);
    run_ctx r = {&c, files.items, top, json, 0};
    otl_classify_sink sink = {print_prediction, print_error, &r};
    if (!st) st = otl_classify_files(&c, (const char *const *)files.items, files.n, batch, &sink);
    otl_classifier_close(&c);
    otl_strlist_free(&inputs);
    otl_strlist_free(&files);
    if (st) return cli_fail(st);
    if (r.errors) fprintf(stderr, "onnxtl: %zu image%s could not be classified\n", r.errors, r.errors == 1 ? "" : "s");
    return r.errors ? EXIT_FAIL : 0;
}
