/* onnxtl fit-head: train the replaced classifier on cached features and
 * export the fine-tuned model as ONNX. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fit_head.h"
#include "json.h"
#include "progress.h"

static const char fit_head_help[] =
    "usage: onnxtl fit-head FEATURES [options]\n"
    "\n"
    "Trains a new classifier head on a features file from 'onnxtl extract' and\n"
    "writes the backbone (up to the cut, from the model the features file names)\n"
    "plus the head as one ONNX model with a Softmax output 'probabilities'.\n"
    "On a file of 'extract --views K', each epoch takes the next augmented view of\n"
    "every training image.\n"
    "\n"
    "options:\n"
    "  -o FILE              model to write (default model.onnx; 'none' trains and writes only --head-only)\n"
    "  --head-only FILE     also write the head alone (input: 'features')\n"
    "  --head auto|linear|mlp  auto: the shape of the classifier the cut removed (default)\n"
    "  --hidden A,B         MLP hidden sizes (default: as the removed classifier, else 4096,4096)\n"
    "  --dropout P          MLP dropout in training (default 0.5)\n"
    "  --optim adam|sgd     default adam\n"
    "  --lr X               default 1e-5\n"
    "  --momentum M         SGD momentum (default 0)\n"
    "  --weight-decay W     L2 penalty as torch.optim applies it (default 0)\n"
    "  --batch N            default 16\n"
    "  --epochs N           default 5\n"
    "  --seed S             initialisation, shuffling and dropout (default 0)\n"
    "  --keep best|last     the epoch with the best test accuracy (default) or the last\n"
    "  --threads N          default: all cores\n"
    "  --device D           cpu (default), cuda or cuda:N (cuBLAS; needs a build with make CUDA=1)\n"
    "  --precision P        on cuda: fp32 (default, true fp32) or tf32\n"
    "  --backbone FILE      the backbone model, if it moved (checked against its SHA-256)\n"
    "  --init-from DIR      start from DIR/w0.npy, b0.npy, ... instead of a random init\n"
    "  --save-weights DIR   also write the trained weights as DIR/w0.npy, b0.npy, ...\n"
    "  --no-shuffle         keep the row order (reproducible comparisons)\n"
    "  --log FILE           JSON lines: each step's loss and accuracy, each epoch's figures\n"
    "  --report FILE        a self-contained HTML report with the loss and accuracy curves\n"
    "  --quiet              no progress or per-epoch lines\n"
    "  --json               JSON lines on stdout: one per epoch, then the result\n";

typedef struct {
    otl_fit_head_options o;
    const char *optim, *keep;
    onnxtl_options dev; /* --device and --precision */
    bool quiet, json;
} fit_args;

/* --hidden A,B: two positive sizes. */
static int parse_hidden(const char *v, int *hidden) {
    char extra;
    if (sscanf(v, "%d,%d%c", &hidden[0], &hidden[1], &extra) != 2 || hidden[0] < 1 || hidden[1] < 1)
        return cli_usage("fit-head", "--hidden takes two positive sizes like 4096,4096, got '%s'", v);
    return 0;
}

static int parse_value(fit_args *a, const char *opt, const char *v) {
    int n, rc = 0;
    if (cli_device_option("fit-head", opt, v, &a->dev, &rc)) return rc;
    otl_train_options *t = &a->o.train;
    if (!strcmp(opt, "-o")) a->o.out = strcmp(v, "none") ? v : NULL;
    else if (!strcmp(opt, "--head-only")) a->o.head_only = v;
    else if (!strcmp(opt, "--head")) a->o.head = v;
    else if (!strcmp(opt, "--hidden")) return parse_hidden(v, a->o.hidden);
    else if (!strcmp(opt, "--optim")) a->optim = v;
    else if (!strcmp(opt, "--keep")) a->keep = v;
    else if (!strcmp(opt, "--backbone")) a->o.backbone = v;
    else if (!strcmp(opt, "--init-from")) a->o.init_from = v;
    else if (!strcmp(opt, "--save-weights")) a->o.save_weights = v;
    else if (!strcmp(opt, "--log")) t->log = v;
    else if (!strcmp(opt, "--report")) a->o.report = v;
    else if (!strcmp(opt, "--lr")) return cli_parse_float("fit-head", opt, v, &t->lr);
    else if (!strcmp(opt, "--momentum")) return cli_parse_float("fit-head", opt, v, &t->momentum);
    else if (!strcmp(opt, "--weight-decay")) return cli_parse_float("fit-head", opt, v, &t->weight_decay);
    else if (!strcmp(opt, "--dropout")) return cli_parse_float("fit-head", opt, v, &t->dropout);
    else if (!strcmp(opt, "--batch")) return cli_parse_int("fit-head", opt, v, 1, 1 << 16, &t->batch) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--epochs")) return cli_parse_int("fit-head", opt, v, 1, 1 << 20, &t->epochs) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--threads")) return cli_parse_int("fit-head", opt, v, 1, 1024, &t->threads) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--seed")) {
        if (!cli_parse_int("fit-head", opt, v, 0, 1 << 30, &n)) return EXIT_USAGE;
        t->seed = (uint64_t)n;
    } else return cli_usage("fit-head", "unknown option '%s'", opt);
    return 0;
}

static int parse_args(int argc, char **argv, fit_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) a->quiet = true;
        else if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--no-shuffle")) a->o.train.shuffle = false;
        else if (s[0] == '-') {
            if (i + 1 >= argc) return cli_usage("fit-head", "%s needs a value", s);
            int rc = parse_value(a, s, argv[++i]);
            if (rc) return rc;
        } else if (!a->o.features) a->o.features = s;
        else return cli_usage("fit-head", "unexpected argument '%s'", s);
    }
    otl_train_options *t = &a->o.train;
    if (!a->o.features) return cli_usage("fit-head", "expected a FEATURES file");
    if (strcmp(a->optim, "adam") && strcmp(a->optim, "sgd")) return cli_usage("fit-head", "--optim is adam or sgd");
    if (strcmp(a->keep, "best") && strcmp(a->keep, "last")) return cli_usage("fit-head", "--keep is best or last");
    if (strcmp(a->o.head, "auto") && strcmp(a->o.head, "linear") && strcmp(a->o.head, "mlp"))
        return cli_usage("fit-head", "--head is auto, linear or mlp");
    if (!(t->lr > 0) || t->dropout < 0 || t->dropout >= 1 || t->momentum < 0 || t->weight_decay < 0)
        return cli_usage("fit-head", "--lr must be positive, --dropout in [0, 1), --momentum and --weight-decay >= 0");
    t->adam = !strcmp(a->optim, "adam");
    t->device = a->dev.device;
    /* Training updates float32 weights: fp32 unless tf32 is asked for. */
    t->precision = a->dev.precision_set ? a->dev.precision : ONNXTL_PRECISION_FP32;
    t->keep_last = !strcmp(a->keep, "last");
    return 0;
}

static void print_head(const otl_head *h, const otl_train_options *t) {
    printf("head: %s %d", h->n_layers == 1 ? "Linear" : "MLP", h->dims[0]);
    for (int l = 1; l < h->n_layers; l++) printf(" -> %d", h->dims[l]);
    printf(" -> %d classes, %zu parameters; %s lr %g, batch %d, %d epochs\n", h->dims[h->n_layers], h->n_params,
           t->adam ? "Adam" : "SGD", t->lr, t->batch, t->epochs);
}

static void json_epoch(void *ctx, const otl_epoch_figures *e) {
    cli_json j = cli_json_start(stdout);
    cli_json_object(&j, NULL);
    cli_json_int(&j, "epoch", e->epoch);
    cli_json_num(&j, "train_loss", e->train_loss);
    cli_json_num(&j, "train_accuracy", e->train_acc);
    if (e->eval_split) {
        char key[32];
        snprintf(key, sizeof key, "%s_loss", e->eval_split);
        cli_json_num(&j, key, e->eval_loss);
        snprintf(key, sizeof key, "%s_accuracy", e->eval_split);
        cli_json_num(&j, key, e->eval_acc);
    }
    cli_json_close(&j);
    fflush(stdout);
}

static void json_result(const fit_args *a, const otl_head *h, const otl_train_result *r) {
    cli_json j = cli_json_start(stdout);
    cli_json_object(&j, NULL);
    cli_json_array(&j, "head");
    for (int l = 0; l <= h->n_layers; l++) cli_json_int(&j, NULL, h->dims[l]);
    cli_json_close(&j);
    cli_json_int(&j, "parameters", (long long)h->n_params);
    cli_json_int(&j, "kept_epoch", r->best_epoch);
    cli_json_num(&j, "train_loss", r->train_loss);
    cli_json_num(&j, "train_accuracy", r->train_acc);
    cli_json_str(&j, "eval_split", r->eval_split >= 0 ? otl_split_names[r->eval_split] : NULL);
    cli_json_num(&j, "eval_loss", r->eval_split >= 0 ? r->test_loss : NAN);
    cli_json_num(&j, "eval_accuracy", r->eval_split >= 0 ? r->test_acc : NAN);
    cli_json_str(&j, "model", a->o.out);
    cli_json_str(&j, "head_only", a->o.head_only);
    cli_json_close(&j);
}

static onnxtl_status *fit(const fit_args *a) {
    otl_fit_head *fh;
    OTL_TRY(otl_fit_head_open(&a->o, &fh));
    if (!a->quiet && !a->json) print_head(otl_fit_head_layers(fh), &a->o.train);
    otl_train_result r;
    onnxtl_status *st = otl_fit_head_run(fh, &r);
    if (!st && a->json) json_result(a, otl_fit_head_layers(fh), &r);
    otl_fit_head_close(fh);
    if (!st && !a->quiet && !a->json) {
        printf("kept epoch %d: train acc %.4f", r.best_epoch, r.train_acc);
        if (r.eval_split >= 0) printf(", %s acc %.4f", otl_split_names[r.eval_split], r.test_acc);
        printf("\nwrote%s%s%s%s\n", a->o.out ? " " : "", a->o.out ? a->o.out : "", a->o.head_only ? " " : "",
               a->o.head_only ? a->o.head_only : "");
    }
    return st;
}

int cmd_fit_head(int argc, char **argv) {
    if (cli_help_asked(argc, argv, fit_head_help)) return 0;
    fit_args a = {.o = {.out = "model.onnx", .head = "auto",
                        .train = {.lr = 1e-5f, .dropout = 0.5f, .batch = 16, .epochs = 5, .shuffle = true}},
                  .optim = "adam", .keep = "best"};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    cli_reporter rep;
    otl_events events = cli_reporter_events(&rep, a.quiet);
    if (a.json) events.epoch = json_epoch;
    a.o.train.events = &events;
    onnxtl_status *st = fit(&a);
    return st ? cli_fail(st) : 0;
}
