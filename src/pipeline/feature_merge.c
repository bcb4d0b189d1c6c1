/* Merging the shards of one extraction into one features file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "feature_format.h"
#include "status.h"

/* The metadata text with its shard line left out. */
static size_t meta_without_shard(const otl_features *f, const char **before, size_t *before_len,
                                 const char **after) {
    size_t len;
    const char *m = otl_features_meta_raw(f, &len), *end = m + len;
    const char *s = memmem(m, len, "\nshard=", 7);
    const char *nl = s ? memchr(s + 1, '\n', (size_t)(end - s - 1)) : NULL;
    *before = m;
    *before_len = s ? (size_t)(s - m) : len;
    *after = nl ? nl : end;
    return (size_t)(end - *after);
}

bool otl_features_same_extraction(const otl_features *a, const otl_features *b) {
    const char *ab, *aa, *bb, *ba;
    size_t abl, bbl;
    size_t aal = meta_without_shard(a, &ab, &abl, &aa), bal = meta_without_shard(b, &bb, &bbl, &ba);
    return a->h.dim == b->h.dim && abl == bbl && aal == bal && !memcmp(ab, bb, abl) && !memcmp(aa, ba, aal);
}

/* Gathers up to MERGE_CHUNK rows at a time so each sync covers many rows. */
#define MERGE_CHUNK 256

onnxtl_status *otl_features_write_merged(const char *out_path, otl_features *const *in, int n) {
    for (int i = 0; i < n; i++) OTL_TRY(otl_features_check_rows(in[i]));
    otl_features_meta meta = in[0]->meta;
    meta.shard_k = meta.shard_n = 1;
    char *text, partial[4096];
    size_t len;
    OTL_TRY(otl_features_meta_text(&meta, &text, &len));
    snprintf(partial, sizeof partial, "%s.partial", out_path);
    unlink(partial); /* a merge starts over; it is quick */
    otl_features_writer *w = NULL;
    uint32_t next;
    uint64_t done;
    const uint32_t dim = in[0]->h.dim;
    const otl_features_layout layout = {dim, meta.dtype, meta.n_classes, meta.views};
    onnxtl_status *st = otl_features_writer_open(out_path, text, len, &layout, true, &w, &next, &done);
    free(text);
    uint64_t *pos = calloc((size_t)n, sizeof *pos);
    float *feats = malloc(sizeof(float) * dim * MERGE_CHUNK);
    otl_row_tag tags[MERGE_CHUNK];
    if (!st && (!pos || !feats)) st = otl_nomem();
    /* k-way merge by image index reproduces the unsharded row order. */
    for (size_t k = 0; !st;) {
        int best = -1;
        otl_row_tag bt = {0};
        for (int i = 0; i < n; i++) {
            if (pos[i] >= in[i]->h.n_rows) continue;
            const otl_row_tag t = otl_features_tag(in[i], pos[i]);
            if (best < 0 || t.image < bt.image) best = i, bt = t;
        }
        if (best >= 0) {
            otl_features_values(in[best], pos[best]++, feats + k * dim);
            tags[k++] = bt;
        }
        if (k == MERGE_CHUNK || (best < 0 && k)) {
            st = otl_features_writer_append(w, feats, tags, k);
            k = 0;
        }
        if (best < 0) break;
    }
    free(pos);
    free(feats);
    if (!st) st = otl_features_writer_finish(w, NULL);
    otl_features_writer_release(w);
    return st;
}
