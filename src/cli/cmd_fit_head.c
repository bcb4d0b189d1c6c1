/* onnxtl fit-head: train the replaced classifier on cached features and
 * export the fine-tuned model as ONNX. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "export.h"
#include "hash.h"
#include "model.h"
#include "progress.h"
#include "status.h"
#include "train.h"

static const char fit_head_help[] =
    "usage: onnxtl fit-head FEATURES [options]\n"
    "\n"
    "Trains a new classifier head on a features file from 'onnxtl extract' and\n"
    "writes the backbone (up to the cut, from the model the features file names)\n"
    "plus the head as one ONNX model with a Softmax output 'probabilities'.\n"
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
    "  --step-log FILE      write each step's loss to FILE\n"
    "  --quiet              no progress or per-epoch lines\n";

typedef struct {
    const char *features, *out, *head_only, *head, *hidden, *optim, *keep, *backbone, *init_from, *save_weights;
    otl_train_options t;
    onnxtl_options dev; /* --device and --precision */
    bool quiet;
} fit_args;

static int parse_float(const char *opt, const char *v, float *out) {
    char *end;
    float x = v ? strtof(v, &end) : 0;
    if (!v || !*v || *end || x != x) return cli_usage("fit-head", "%s needs a number, got '%s'", opt, v ? v : "");
    *out = x;
    return 0;
}

static int parse_value(fit_args *a, const char *opt, const char *v) {
    int n, rc = 0;
    if (cli_device_option("fit-head", opt, v, &a->dev, &rc)) return rc;
    if (!strcmp(opt, "-o")) a->out = v;
    else if (!strcmp(opt, "--head-only")) a->head_only = v;
    else if (!strcmp(opt, "--head")) a->head = v;
    else if (!strcmp(opt, "--hidden")) a->hidden = v;
    else if (!strcmp(opt, "--optim")) a->optim = v;
    else if (!strcmp(opt, "--keep")) a->keep = v;
    else if (!strcmp(opt, "--backbone")) a->backbone = v;
    else if (!strcmp(opt, "--init-from")) a->init_from = v;
    else if (!strcmp(opt, "--save-weights")) a->save_weights = v;
    else if (!strcmp(opt, "--step-log")) a->t.step_log = v;
    else if (!strcmp(opt, "--lr")) return parse_float(opt, v, &a->t.lr);
    else if (!strcmp(opt, "--momentum")) return parse_float(opt, v, &a->t.momentum);
    else if (!strcmp(opt, "--weight-decay")) return parse_float(opt, v, &a->t.weight_decay);
    else if (!strcmp(opt, "--dropout")) return parse_float(opt, v, &a->t.dropout);
    else if (!strcmp(opt, "--batch")) return cli_parse_int("fit-head", opt, v, 1, 1 << 16, &a->t.batch) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--epochs")) return cli_parse_int("fit-head", opt, v, 1, 1 << 20, &a->t.epochs) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--threads")) return cli_parse_int("fit-head", opt, v, 1, 1024, &a->t.threads) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--seed")) {
        if (!cli_parse_int("fit-head", opt, v, 0, 1 << 30, &n)) return EXIT_USAGE;
        a->t.seed = (uint64_t)n;
    } else return cli_usage("fit-head", "unknown option '%s'", opt);
    return 0;
}

static int parse_args(int argc, char **argv, fit_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) a->quiet = true;
        else if (!strcmp(s, "--no-shuffle")) a->t.shuffle = false;
        else if (s[0] == '-') {
            if (i + 1 >= argc) return cli_usage("fit-head", "%s needs a value", s);
            int rc = parse_value(a, s, argv[++i]);
            if (rc) return rc;
        } else if (!a->features) a->features = s;
        else return cli_usage("fit-head", "unexpected argument '%s'", s);
    }
    if (!a->features) return cli_usage("fit-head", "expected a FEATURES file");
    if (strcmp(a->optim, "adam") && strcmp(a->optim, "sgd")) return cli_usage("fit-head", "--optim is adam or sgd");
    if (strcmp(a->keep, "best") && strcmp(a->keep, "last")) return cli_usage("fit-head", "--keep is best or last");
    if (strcmp(a->head, "auto") && strcmp(a->head, "linear") && strcmp(a->head, "mlp"))
        return cli_usage("fit-head", "--head is auto, linear or mlp");
    if (!(a->t.lr > 0) || a->t.dropout < 0 || a->t.dropout >= 1 || a->t.momentum < 0 || a->t.weight_decay < 0)
        return cli_usage("fit-head", "--lr must be positive, --dropout in [0, 1), --momentum and --weight-decay >= 0");
    a->t.adam = !strcmp(a->optim, "adam");
    a->t.device = a->dev.device;
    /* Training updates float32 weights: fp32 unless tf32 is asked for. */
    a->t.precision = a->dev.precision_set ? a->dev.precision : ONNXTL_PRECISION_FP32;
    a->t.keep_last = !strcmp(a->keep, "last");
    return 0;
}

/* Layer sizes: linear, or the removed classifier's MLP shape, or --hidden. */
static onnxtl_status *head_layers(const fit_args *a, const otl_features_meta *m, int *n_layers, int *dims) {
    int removed[OTL_HEAD_MAX_LAYERS + 1], n_removed = 0;
    for (const char *p = m->head; *p && n_removed < OTL_HEAD_MAX_LAYERS; n_removed++) {
        long in, out;
        if (sscanf(p, "%ldx%ld", &in, &out) != 2) break;
        if (!n_removed) removed[0] = (int)in;
        removed[n_removed + 1] = (int)out;
        p = strchr(p, ',') ? strchr(p, ',') + 1 : "";
    }
    bool mlp = !strcmp(a->head, "mlp") || (!strcmp(a->head, "auto") && n_removed == 3);
    dims[0] = (int)m->dim;
    if (!mlp) {
        *n_layers = 1;
        dims[1] = m->n_classes;
        return NULL;
    }
    *n_layers = 3;
    dims[1] = dims[2] = 4096;
    if (n_removed == 3) dims[1] = removed[1], dims[2] = removed[2];
    if (a->hidden && sscanf(a->hidden, "%d,%d", &dims[1], &dims[2]) != 2)
        return otl_error(ONNXTL_ERR_ARG, "--hidden takes two sizes like 4096,4096");
    if (dims[1] < 1 || dims[2] < 1) return otl_error(ONNXTL_ERR_ARG, "--hidden sizes must be positive");
    dims[3] = m->n_classes;
    return NULL;
}

/* The backbone must be the very file the features came from. */
static onnxtl_status *check_backbone(const char *path, const otl_features_meta *m, int *cut_rank) {
    char sha[65];
    OTL_TRY(otl_error_wrap(otl_sha256_file(path, sha), "the backbone model (give its new place with --backbone)"));
    if (strcmp(sha, m->model_sha256))
        return otl_error(ONNXTL_ERR_ARG, "%s is not the model the features were extracted with (SHA-256 %.12s..., "
                         "expected %.12s...); give the right one with --backbone", path, sha, m->model_sha256);
    onnxtl_model *model;
    OTL_TRY(onnxtl_model_load(path, &model));
    int cut = otl_graph_find(onnxtl_model_graph(model), m->cut);
    otl_tinfo shape;
    onnxtl_status *st = cut < 0 ? otl_error(ONNXTL_ERR_MODEL, "%s has no tensor '%s'", path, m->cut)
                                : otl_model_shape(model, NULL, 1, cut, &shape);
    if (!st) *cut_rank = shape.rank;
    onnxtl_model_release(model);
    return st;
}

static onnxtl_status *export_all(const fit_args *a, const otl_features_meta *m, const otl_head *h, int cut_rank,
                                 const char *backbone, const otl_train_result *r) {
    size_t names_len = 1;
    for (int i = 0; i < m->n_classes; i++) names_len += strlen(m->classes[i]) + 1;
    char *names = calloc(names_len, 1), acc[32];
    if (!names) return otl_nomem();
    for (int i = 0; i < m->n_classes; i++) strcat(strcat(names, i ? "\n" : ""), m->classes[i]);
    otl_preprocess_text pt;
    otl_preprocess_to_text(&m->pre, &pt);
    snprintf(acc, sizeof acc, "%.6f", r->test_acc);
    const char *keys[] = {"onnxtl.classes", "onnxtl.resize", "onnxtl.crop", "onnxtl.mean", "onnxtl.std",
                          "onnxtl.test_accuracy"};
    const char *values[] = {names, pt.resize, pt.crop, pt.mean, pt.std, acc};
    const float *w[OTL_HEAD_MAX_LAYERS], *b[OTL_HEAD_MAX_LAYERS];
    for (int l = 0; l < h->n_layers; l++) w[l] = h->w[l], b[l] = h->b[l];
    otl_head_spec spec = {h->n_layers, h->dims, w, b, keys, values, 6};
    onnxtl_status *st = strcmp(a->out, "none") ? otl_export_model(backbone, m->cut, cut_rank, &spec, a->out) : NULL;
    if (!st && a->head_only) st = otl_export_head(&spec, a->head_only);
    if (!st && a->save_weights) st = otl_head_save_npy(h, a->save_weights);
    free(names);
    return st;
}

static void print_head(const otl_head *h, const otl_train_options *t) {
    printf("head: %s %d", h->n_layers == 1 ? "Linear" : "MLP", h->dims[0]);
    for (int l = 1; l < h->n_layers; l++) printf(" -> %d", h->dims[l]);
    printf(" -> %d classes, %zu parameters; %s lr %g, batch %d, %d epochs\n", h->dims[h->n_layers], h->n_params,
           t->adam ? "Adam" : "SGD", t->lr, t->batch, t->epochs);
}

static onnxtl_status *fit(const fit_args *a) {
    otl_features *f;
    OTL_TRY(otl_features_open(a->features, &f));
    const otl_features_meta *m = otl_features_meta_of(f);
    const char *backbone = a->backbone ? a->backbone : m->model_path;
    int n_layers = 0, dims[OTL_HEAD_MAX_LAYERS + 1], cut_rank = 2;
    otl_head h = {0};
    otl_train_result r;
    onnxtl_status *st = NULL;
    if (m->n_classes < 2)
        st = otl_error(ONNXTL_ERR_ARG, "%s has only one class ('%s'); a classifier needs at least two",
                       a->features, m->classes[0]);
    if (!st && strcmp(a->out, "none")) /* before training: no work is lost to a missing file */
        st = check_backbone(backbone, m, &cut_rank);
    if (!st) st = head_layers(a, m, &n_layers, dims);
    if (!st) st = otl_head_create(&h, n_layers, dims, a->t.seed);
    if (!st && a->init_from) st = otl_head_load_npy(&h, a->init_from);
    if (!st && !a->quiet) print_head(&h, &a->t);
    if (!st) st = otl_train(&h, f, &a->t, &r);
    if (!st) st = export_all(a, m, &h, cut_rank, backbone, &r);
    if (!st && !a->quiet) {
        printf("kept epoch %d: train acc %.4f", r.best_epoch, r.train_acc);
        if (r.eval_split >= 0) printf(", %s acc %.4f", otl_split_names[r.eval_split], r.test_acc);
        printf("\nwrote %s%s%s\n", strcmp(a->out, "none") ? a->out : "", a->head_only ? " " : "", a->head_only ? a->head_only : "");
    }
    otl_head_free(&h);
    otl_features_close(f);
    return st;
}

int cmd_fit_head(int argc, char **argv) {
    if (cli_help_asked(argc, argv, fit_head_help)) return 0;
    fit_args a = {.out = "model.onnx", .head = "auto", .optim = "adam", .keep = "best",
                  .t = {.lr = 1e-5f, .dropout = 0.5f, .batch = 16, .epochs = 5, .shuffle = true}};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    cli_reporter rep;
    const otl_events events = cli_reporter_events(&rep, a.quiet);
    a.t.events = &events;
    onnxtl_status *st = fit(&a);
    return st ? cli_fail(st) : 0;
}
