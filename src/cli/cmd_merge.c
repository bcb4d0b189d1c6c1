/* onnxtl merge: join the shards of one extraction into one features file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "status.h"

static const char merge_help[] =
    "usage: onnxtl merge OUT IN... [--json]\n"
    "\n"
    "Merges features files made with extract --shard K/N from the same model,\n"
    "data and preprocessing.  Rows come out in the order an unsharded run writes\n"
    "them.  Every shard must be present exactly once.  --json prints the output,\n"
    "the shard count and the row count as one JSON object.\n";

static onnxtl_status *check_shards(otl_features *const *in, int n) {
    const otl_features_meta *m0 = otl_features_meta_of(in[0]);
    int expected = m0->shard_n;
    bool *seen = calloc((size_t)expected + 1, sizeof *seen);
    if (!seen) return otl_nomem();
    onnxtl_status *st = NULL;
    for (int i = 0; i < n && !st; i++) {
        const otl_features_meta *m = otl_features_meta_of(in[i]);
        if (!otl_features_same_extraction(in[0], in[i]))
            st = otl_error(ONNXTL_ERR_ARG, "%s and %s come from different extractions (model, cut, preprocessing, "
                           "data or arithmetic differ: model %.12s... on %s vs %.12s... on %s); only shards of one "
                           "extraction can be merged", otl_features_path(in[0]), otl_features_path(in[i]),
                           m0->model_sha256, *m0->compute ? m0->compute : "?", m->model_sha256,
                           *m->compute ? m->compute : "?");
        else if (m->shard_n != expected || seen[m->shard_k])
            st = otl_error(ONNXTL_ERR_ARG, "%s: shard %d/%d is repeated or from another split of the data",
                           otl_features_path(in[i]), m->shard_k, m->shard_n);
        else
            seen[m->shard_k] = true;
    }
    for (int k = 1; k <= expected && !st; k++)
        if (!seen[k]) st = otl_error(ONNXTL_ERR_ARG, "shard %d/%d is missing", k, expected);
    free(seen);
    return st;
}

int cmd_merge(int argc, char **argv) {
    if (cli_help_asked(argc, argv, merge_help)) return 0;
    bool json = false;
    char **files = calloc((size_t)argc, sizeof *files);
    int n_files = 0;
    if (!files) return cli_fail(otl_nomem());
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (argv[i][0] == '-') return free(files), cli_usage("merge", "unknown option '%s'", argv[i]);
        else files[n_files++] = argv[i];
    }
    if (n_files < 2) return free(files), cli_usage("merge", "expected OUT and at least one IN file");
    const int n = n_files - 1;
    otl_features **in = calloc((size_t)n, sizeof *in);
    if (!in) return cli_fail(otl_nomem());
    onnxtl_status *st = NULL;
    for (int i = 0; i < n && !st; i++) st = otl_features_open(files[i + 1], &in[i]);
    if (!st) st = check_shards(in, n);
    if (!st) st = otl_features_write_merged(files[0], in, n);
    uint64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (in[i]) rows += otl_features_rows(in[i]);
        otl_features_close(in[i]);
    }
    free(in);
    const char *out = files[0];
    free(files);
    if (st) return cli_fail(st);
    if (json) {
        cli_json j = cli_json_start(stdout);
        cli_json_object(&j, NULL);
        cli_json_str(&j, "output", out);
        cli_json_int(&j, "shards", n);
        cli_json_int(&j, "rows", (long long)rows);
        cli_json_close(&j);
    } else {
        printf("merged %d shard%s into %s: %llu rows\n", n, n == 1 ? "" : "s", out, (unsigned long long)rows);
    }
    return 0;
}
