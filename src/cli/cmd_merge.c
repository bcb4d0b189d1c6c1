/* onnxtl merge: join the shards of one extraction into one features file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "status.h"

static const char merge_help[] =
    "usage: onnxtl merge OUT IN...\n"
    "\n"
    "Merges features files made with extract --shard K/N from the same model,\n"
    "data and preprocessing.  Rows come out in the order an unsharded run writes\n"
    "them.  Every shard must be present exactly once.\n";

static onnxtl_status *check_shards(otl_features *const *in, int n) {
    const otl_features_meta *m0 = otl_features_meta_of(in[0]);
    int expected = m0->shard_n;
    bool *seen = calloc((size_t)expected + 1, sizeof *seen);
    if (!seen) return otl_nomem();
    onnxtl_status *st = NULL;
    for (int i = 0; i < n && !st; i++) {
        const otl_features_meta *m = otl_features_meta_of(in[i]);
        if (!otl_features_same_extraction(in[0], in[i]))
            st = otl_error(ONNXTL_ERR_ARG, "%s and %s come from different extractions (model, cut, preprocessing "
                           "or data differ: %s vs %s); only shards of one extraction can be merged",
                           otl_features_path(in[0]), otl_features_path(in[i]), m0->model_sha256, m->model_sha256);
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
    if (argc < 3) return cli_usage("merge", "expected OUT and at least one IN file");
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-') return cli_usage("merge", "unknown option '%s'", argv[i]);
    int n = argc - 2;
    otl_features **in = calloc((size_t)n, sizeof *in);
    if (!in) return cli_fail(otl_nomem());
    onnxtl_status *st = NULL;
    for (int i = 0; i < n && !st; i++) st = otl_features_open(argv[i + 2], &in[i]);
    if (!st) st = check_shards(in, n);
    if (!st) st = otl_features_write_merged(argv[1], in, n);
    uint64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (in[i]) rows += otl_features_rows(in[i]);
        otl_features_close(in[i]);
    }
    free(in);
    if (st) return cli_fail(st);
    printf("merged %d shard%s into %s: %llu rows\n", n, n == 1 ? "" : "s", argv[1], (unsigned long long)rows);
    return 0;
}
