/* Decoded, preprocessed image batches from a list of files: decoder threads
 * fill a bounded ring of batch slots while the caller consumes them in order.
 * Memory stays at a few batches whatever the number of images. */
#ifndef OTL_BATCHES_H
#define OTL_BATCHES_H

#include "onnxtl.h"
#include "preprocess.h"

typedef struct {
    const char *const *paths; /* files to decode, in order */
    size_t n;
    const otl_preprocess *pre;
    int height, width; /* the preprocessed size */
    int batch, decoders;
    onnxtl_session *session; /* pixels go in its fastest host memory (pinned on CUDA); NULL: malloc */
} otl_batch_source;

typedef struct {
    size_t first;        /* index of the batch's first image in paths */
    size_t count;        /* images the batch covers */
    float *pixels;       /* good x 3 x height x width, then zeros up to count */
    size_t good;
    const size_t *index; /* per good image: its index in paths */
    size_t n_bad;
    const size_t *bad;   /* images that could not be read ... */
    char *const *why;    /* ... and why, naming the file */
} otl_batch;

/* Called once per batch, in order; a returned error stops the run. */
typedef onnxtl_status *(*otl_batch_fn)(void *ctx, const otl_batch *b);

onnxtl_status *otl_batches_run(const otl_batch_source *src, otl_batch_fn fn, void *ctx);

#endif
