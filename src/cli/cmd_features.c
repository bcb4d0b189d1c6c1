/* onnxtl features: inspect a features file or export it for NumPy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "cli.h"
#include "json.h"
#include "npy.h"
#include "status.h"

static const char features_help[] =
    "usage: onnxtl features FILE [--npy PREFIX] [--json]\n"
    "\n"
    "Prints a features file's header (model, cut, preprocessing, classes) and\n"
    "statistics (rows per split and class, feature value ranges).  With --npy,\n"
    "also writes PREFIX_features.npy (float32, rows x dim, whatever the file\n"
    "stores), PREFIX_labels.npy\n"
    "(int64), PREFIX_splits.npy (int8: 0 train, 1 val, 2 test, 3 unsplit) and\n"
    "PREFIX_paths.txt (one image path per row, in row order).  --json prints the\n"
    "same as one JSON object.\n";

/* What made the file: model, cut, preprocessing, arithmetic, shard. */
static void print_header(const otl_features *f) {
    const otl_features_meta *m = otl_features_meta_of(f);
    char pre[256];
    otl_preprocess_describe(&m->pre, pre, sizeof pre);
    printf("file: %s\nmodel: %s\nmodel sha256: %s\nfeatures: '%s', %u %s values per row\n",
           otl_features_path(f), m->model_path, m->model_sha256, m->cut, m->dim, otl_features_dtype_name(m->dtype));
    printf("head that was cut away: %s\npreprocess: %s\n", *m->head ? m->head : "(none)", pre);
    if (*m->compute) printf("computed on: %s\n", m->compute);
    if (m->int8_ranges) printf("int8 scales: from the ranges of %zu tensors (features --json lists them)\n",
                               cli_line_count(m->int8_ranges));
    if (m->shard_n > 1) printf("shard: %d of %d\n", m->shard_k, m->shard_n);
    if (m->views > 1)
        printf("views: %d rows per training image, augmented by %s (seed %llu), one after the other\n", m->views,
               otl_augment_name(&m->augment), (unsigned long long)m->augment.seed);
}

static void print_json(const otl_features *f, const otl_features_stats *stats, const char *prefix) {
    const otl_features_meta *m = otl_features_meta_of(f);
    char pre[256], path[4200];
    otl_preprocess_describe(&m->pre, pre, sizeof pre);
    cli_json j = cli_json_start(stdout);
    cli_json_object(&j, NULL);
    cli_json_str(&j, "file", otl_features_path(f));
    cli_json_str(&j, "model", m->model_path);
    cli_json_str(&j, "model_sha256", m->model_sha256);
    cli_json_str(&j, "cut", m->cut);
    cli_json_int(&j, "dim", m->dim);
    cli_json_str(&j, "dtype", otl_features_dtype_name(m->dtype));
    cli_json_int(&j, "views", m->views);
    if (m->views > 1) cli_json_str(&j, "augment", otl_augment_name(&m->augment)), cli_json_int(&j, "seed", (long long)m->augment.seed);
    cli_json_str(&j, "head", m->head);
    cli_json_str(&j, "preprocess", pre);
    cli_json_str(&j, "compute", *m->compute ? m->compute : NULL);
    cli_json_str(&j, "int8_ranges", m->int8_ranges);
    if (m->shard_n > 1) cli_json_str(&j, "shard", (snprintf(path, sizeof path, "%d/%d", m->shard_k, m->shard_n), path));
    cli_json_array(&j, "classes");
    for (int c = 0; c < m->n_classes; c++) cli_json_str(&j, NULL, m->classes[c]);
    cli_json_close(&j);
    cli_json_int(&j, "images", (long long)m->n_images);
    cli_json_feature_stats(&j, "stats", stats, (const char *const *)m->classes);
    if (prefix) {
        cli_json_array(&j, "wrote");
        for (int c = 0; c < 4; c++) {
            snprintf(path, sizeof path, "%s_%s", prefix, (const char *[]){"features.npy", "labels.npy", "splits.npy", "paths.txt"}[c]);
            cli_json_str(&j, NULL, path);
        }
        cli_json_close(&j);
    }
    cli_json_close(&j);
}

static void print_text(const otl_features *f, const otl_features_stats *stats) {
    print_header(f);
    printf("images listed: %zu\n", otl_features_meta_of(f)->n_images);
    cli_print_feature_stats(stats, (const char *const *)otl_features_meta_of(f)->classes);
}

/* Streams one column of the file into a .npy array, row by row. */
static onnxtl_status *write_column(const otl_features *f, const char *prefix, const char *suffix, int what) {
    const otl_features_meta *m = otl_features_meta_of(f);
    uint64_t rows = otl_features_rows(f);
    char path[4096];
    snprintf(path, sizeof path, "%s_%s.npy", prefix, suffix);
    static const int dtypes[] = {ONNXTL_FLOAT, ONNXTL_INT64, ONNXTL_INT8};
    onnxtl_tensor desc = {.dtype = dtypes[what], .rank = what ? 1 : 2, .dims = {(int64_t)rows, m->dim}};
    float *x = malloc(sizeof(float) * m->dim);
    if (!x) return otl_nomem();
    otl_npy_stream *s;
    onnxtl_status *st = otl_npy_stream_open(path, &desc, &s);
    if (st) {
        free(x);
        return st;
    }
    for (uint64_t i = 0; i < rows && !st; i++) {
        const otl_row_tag t = otl_features_tag(f, i);
        if (what == 0) otl_features_values(f, i, x);
        int64_t label = t.label;
        int8_t split = (int8_t)t.split;
        if (what == 0) st = otl_npy_stream_write(s, x, sizeof(float) * m->dim);
        else if (what == 1) st = otl_npy_stream_write(s, &label, sizeof label);
        else st = otl_npy_stream_write(s, &split, sizeof split);
    }
    onnxtl_status *cst = otl_npy_stream_close(s, st == NULL);
    free(x);
    return st ? (onnxtl_status_release(cst), st) : cst;
}

static onnxtl_status *write_paths(const otl_features *f, const char *prefix) {
    const otl_features_meta *m = otl_features_meta_of(f);
    char path[4096];
    if (snprintf(path, sizeof path, "%s_paths.txt", prefix) >= (int)sizeof path)
        return otl_error(ONNXTL_ERR_ARG, "%s: path too long", prefix);
    otl_atomic_file out;
    OTL_TRY(otl_atomic_open(path, &out));
    for (uint64_t i = 0; i < otl_features_rows(f); i++) {
        fprintf(out.f, "%s\n", m->images[otl_features_tag(f, i).image].path);
    }
    return otl_atomic_close(&out, NULL);
}

int cmd_features(int argc, char **argv) {
    if (cli_help_asked(argc, argv, features_help)) return 0;
    const char *file = NULL, *prefix = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--npy")) {
            if (i + 1 >= argc) return cli_usage("features", "--npy needs a PREFIX");
            prefix = argv[++i];
        } else if (argv[i][0] == '-') {
            return cli_usage("features", "unknown option '%s'", argv[i]);
        } else if (!file) {
            file = argv[i];
        } else {
            return cli_usage("features", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!file) return cli_usage("features", "expected a features FILE");
    otl_features *f;
    onnxtl_status *st = otl_features_open(file, &f);
    if (st) return cli_fail(st);
    otl_features_stats stats = {0};
    st = otl_features_check_rows(f);
    if (!st) st = otl_features_stats_of(f, &stats);
    for (int c = 0; !st && prefix && c < 3; c++)
        st = write_column(f, prefix, (const char *[]){"features", "labels", "splits"}[c], c);
    if (!st && prefix) st = write_paths(f, prefix);
    if (!st && json) print_json(f, &stats, prefix);
    else if (!st) print_text(f, &stats);
    if (!st && prefix && !json)
        printf("wrote %s_features.npy, %s_labels.npy, %s_splits.npy, %s_paths.txt\n", prefix, prefix, prefix, prefix);
    otl_features_stats_free(&stats);
    otl_features_close(f);
    return st ? cli_fail(st) : 0;
}
