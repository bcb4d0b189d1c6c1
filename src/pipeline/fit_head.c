#include "fit_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "hash.h"
#include "model.h"
#include "report.h"
#include "status.h"

struct otl_fit_head {
    const otl_fit_head_options *o;
    otl_features *f;
    const char *backbone;
    int cut_rank;
    otl_head head;
};

onnxtl_status *otl_head_layers_for(const char *kind, const int hidden[2], int n_removed, const int64_t (*removed)[2],
                                   int64_t dim, int n_classes, int *n_layers, int *dims) {
    const bool removed_mlp = n_removed == 3;
    const bool mlp = !strcmp(kind, "mlp") || (!strcmp(kind, "auto") && removed_mlp);
    if (dim < 1 || dim > INT32_MAX) return otl_error(ONNXTL_ERR_ARG, "a head on %lld features is out of range", (long long)dim);
    dims[0] = (int)dim;
    if (!mlp) {
        *n_layers = 1;
        dims[1] = n_classes;
        return NULL;
    }
    *n_layers = 3;
    for (int l = 0; l < 2; l++) {
        int64_t d = hidden[l] ? hidden[l] : removed_mlp ? removed[l][1] : 4096;
        if (d < 1 || d > INT32_MAX) return otl_error(ONNXTL_ERR_ARG, "hidden size %lld is out of range", (long long)d);
        dims[1 + l] = (int)d;
    }
    dims[3] = n_classes;
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
    int cut = otl_graph_find(otl_model_graph(model), m->cut);
    otl_tinfo shape;
    onnxtl_status *st = cut < 0 ? otl_error(ONNXTL_ERR_MODEL, "%s has no tensor '%s'", path, m->cut)
                                : otl_model_shape(model, NULL, 1, cut, &shape);
    if (!st) *cut_rank = shape.rank;
    onnxtl_model_release(model);
    return st;
}

onnxtl_status *otl_model_meta_init(otl_model_meta *mm, char *const *classes, int n_classes, const otl_preprocess *pre) {
    size_t names_len = 1;
    for (int i = 0; i < n_classes; i++) names_len += strlen(classes[i]) + 1;
    *mm = (otl_model_meta){.names = calloc(names_len, 1)};
    if (!mm->names) return otl_nomem();
    for (int i = 0; i < n_classes; i++) strcat(strcat(mm->names, i ? "\n" : ""), classes[i]);
    otl_preprocess_to_text(pre, &mm->pre);
    const char *keys[] = {"onnxtl.classes", "onnxtl.resize", "onnxtl.crop", "onnxtl.mean", "onnxtl.std",
                          "onnxtl.channels", "onnxtl.scale"};
    const char *values[] = {mm->names, mm->pre.resize, mm->pre.crop, mm->pre.mean, mm->pre.std, mm->pre.channels,
                            mm->pre.scale};
    for (int i = 0; i < 7; i++) otl_model_meta_add(mm, keys[i], values[i]);
    return NULL;
}

void otl_model_meta_add(otl_model_meta *mm, const char *key, const char *value) {
    if (mm->n < OTL_MODEL_META_MAX) mm->keys[mm->n] = key, mm->values[mm->n++] = value;
}

void otl_model_meta_free(otl_model_meta *mm) { free(mm->names); }

static onnxtl_status *export_all(const otl_fit_head *fh, const otl_train_result *r) {
    const otl_fit_head_options *a = fh->o;
    const otl_features_meta *m = otl_features_meta_of(fh->f);
    const otl_head *h = &fh->head;
    otl_model_meta mm;
    char acc[32];
    OTL_TRY(otl_model_meta_init(&mm, m->classes, m->n_classes, &m->pre));
    snprintf(acc, sizeof acc, "%.6f", r->test_acc);
    otl_model_meta_add(&mm, "onnxtl.test_accuracy", acc);
    /* the int8 scales the features were computed with, for run --precision int8 */
    if (m->int8_ranges) otl_model_meta_add(&mm, "onnxtl.int8_ranges", m->int8_ranges);
    const float *w[OTL_HEAD_MAX_LAYERS], *b[OTL_HEAD_MAX_LAYERS];
    for (int l = 0; l < h->n_layers; l++) w[l] = h->w[l], b[l] = h->b[l];
    otl_head_spec spec = {h->n_layers, h->dims, w, b, mm.keys, mm.values, mm.n, 0};
    onnxtl_status *st = a->out ? otl_export_model(fh->backbone, m->cut, fh->cut_rank, &spec, a->out) : NULL;
    if (!st && a->head_only) st = otl_export_head(&spec, a->head_only);
    if (!st && a->save_weights) st = otl_head_save_npy(h, a->save_weights);
    otl_model_meta_free(&mm);
    return st;
}

onnxtl_status *otl_fit_head_open(const otl_fit_head_options *o, otl_fit_head **out) {
    otl_fit_head *fh = calloc(1, sizeof *fh);
    if (!fh) return otl_nomem();
    fh->o = o;
    fh->cut_rank = 2;
    onnxtl_status *st = otl_features_open(o->features, &fh->f);
    const otl_features_meta *m = st ? NULL : otl_features_meta_of(fh->f);
    int n_layers = 0, dims[OTL_HEAD_MAX_LAYERS + 1];
    if (!st) fh->backbone = o->backbone ? o->backbone : m->model_path;
    if (!st && m->n_classes < 2)
        st = otl_error(ONNXTL_ERR_ARG, "%s has only one class ('%s'); a classifier needs at least two", o->features,
                       m->classes[0]);
    if (!st && o->out) st = check_backbone(fh->backbone, m, &fh->cut_rank);
    if (!st)
        st = otl_head_layers_for(o->head, o->hidden, m->n_head_layers, (const int64_t(*)[2])m->head_layers, m->dim,
                                 m->n_classes, &n_layers, dims);
    if (!st) st = otl_head_create(&fh->head, n_layers, dims, o->train.seed);
    if (!st && o->init_from) st = otl_head_load_npy(&fh->head, o->init_from);
    if (st) {
        otl_fit_head_close(fh);
        return st;
    }
    *out = fh;
    return NULL;
}

const otl_head *otl_fit_head_layers(const otl_fit_head *f) { return &f->head; }

onnxtl_status *otl_fit_head_run(otl_fit_head *f, otl_train_result *r) {
    otl_train_history history = {0};
    otl_train_options train = f->o->train;
    if (f->o->report) train.history = &history;
    onnxtl_status *st = otl_train(&f->head, f->f, &train, r);
    if (!st) st = export_all(f, r);
    if (!st && f->o->report)
        st = otl_report_training(f->o->report, &history, f->o->features,
                                 r->eval_split >= 0 ? otl_split_names[r->eval_split] : NULL);
    otl_train_history_free(&history);
    return st;
}

void otl_fit_head_close(otl_fit_head *f) {
    if (!f) return;
    otl_head_free(&f->head);
    otl_features_close(f->f);
    free(f);
}
