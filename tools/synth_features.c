/* Writes a synthetic features file (random features, two classes, all in the
 * train split) for benchmarks of fit-head at sizes the photos do not reach.
 * usage: synth_features OUT ROWS DIM HEAD [DTYPE]   (HEAD e.g. 2048x1000; DTYPE fp32 or fp16) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_file.h"

static int fail(onnxtl_status *st) {
    fprintf(stderr, "synth_features: %s\n", onnxtl_status_message(st));
    onnxtl_status_release(st);
    return 1;
}

int main(int argc, char **argv) {
    int dtype = ONNXTL_FLOAT;
    if ((argc != 5 && argc != 6) || (argc == 6 && !otl_features_dtype_parse(argv[5], &dtype))) {
        fprintf(stderr, "usage: %s OUT ROWS DIM HEAD [fp32|fp16]\n", argv[0]);
        return 2;
    }
    size_t rows = strtoull(argv[2], NULL, 10);
    uint32_t dim = (uint32_t)strtoul(argv[3], NULL, 10);
    char *classes[] = {"a", "b"};
    otl_sample *images = calloc(rows, sizeof *images);
    if (!images || !dim) return 1;
    for (size_t i = 0; i < rows; i++) images[i] = (otl_sample){"synthetic.jpg", (int)(i % 2), SPLIT_TRAIN};
    otl_features_meta m = {.model_path = "synthetic", .model_sha256 = "none", .cut = "features", .head = argv[4],
                           .dim = dim, .dtype = dtype, .views = 1, .shard_k = 1, .shard_n = 1, .classes = classes, .n_classes = 2,
                           .images = images, .n_images = rows};
    otl_preprocess_default(&m.pre);
    char *text;
    size_t len;
    otl_features_writer *w;
    uint32_t next;
    uint64_t done;
    onnxtl_status *st = otl_features_meta_text(&m, &text, &len);
    if (st) return fail(st);
    if ((st = otl_features_writer_open(argv[1], text, len, &(otl_features_layout){dim, dtype, 2, 1}, true, &w, &next, &done))) return fail(st);
    enum { CHUNK = 256 };
    float *x = malloc(sizeof(float) * dim * CHUNK);
    otl_row_tag tags[CHUNK];
    uint64_t s = 42;
    for (size_t r = 0; r < rows && x; r += CHUNK) {
        size_t n = rows - r < CHUNK ? rows - r : CHUNK;
        for (size_t i = 0; i < n; i++) {
            tags[i] = (otl_row_tag){(uint32_t)(r + i), (int32_t)((r + i) % 2), SPLIT_TRAIN, 0};
            for (uint32_t k = 0; k < dim; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                x[i * dim + k] = (float)(s >> 40) / 16777216.0f + (tags[i].label ? 0.05f : 0.0f);
            }
        }
        if ((st = otl_features_writer_append(w, x, tags, n))) return fail(st);
    }
    if ((st = otl_features_writer_finish(w, NULL))) return fail(st);
    otl_features_writer_release(w);
    free(x);
    free(text);
    free(images);
    return 0;
}
