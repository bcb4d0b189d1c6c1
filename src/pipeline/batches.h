/* Decoded, preprocessed image batches from a list of files: decoder threads
 * fill a bounded ring of batch slots while consumer threads take them.
 * Memory stays at a few batches whatever the number of images. */
#ifndef OTL_BATCHES_H
#define OTL_BATCHES_H

#include "onnxtl.h"
#include "augment.h"
#include "preprocess.h"

/* Which draws augment an image: those of (epoch, key), key being its index
 * in the dataset, so that its view depends on neither the order nor the
 * threads; epoch 0: not augmented. */
typedef struct {
    uint64_t key;
    uint32_t epoch;
} otl_draw_key;

typedef struct {
    const char *const *paths; /* files to decode, in order */
    size_t n;
    const otl_preprocess *pre;
    int height, width; /* the preprocessed size */
    bool hwc;          /* images are written height x width x 3 (an NHWC network input) */
    int batch, decoders;
    int64_t max_pixels;      /* the decoders' limit (0: OTL_DEFAULT_MAX_PIXELS) */
    int consumers;           /* threads running the callback, each batch on one of them */
    onnxtl_session *session; /* pixels go in its fastest host memory (pinned on CUDA); NULL: malloc */
    const otl_augment *augment; /* training: images augmented (NULL: none) ... */
    const otl_draw_key *draws;  /* ... image i with the draws of draws[i] */
} otl_batch_source;

typedef struct {
    size_t first;        /* index of the batch's first image in paths */
    size_t count;        /* images the batch covers */
    float *pixels;       /* good x 3 x height x width (or x height x width x 3), then zeros up to the batch size */
    size_t good;
    const size_t *index; /* per good image: its index in paths */
    size_t n_bad;
    const size_t *bad;   /* images that could not be read ... */
    char *const *why;    /* ... and why, naming the file */
} otl_batch;

/* Batches finish in order.  Where work must also happen in order (writing
 * results), the callback waits for its turn: true once every earlier batch
 * has finished, false if the run stopped (then it returns at once). */
typedef struct otl_batch_turn otl_batch_turn;
bool otl_batch_wait_turn(otl_batch_turn *turn);

/* Called once per batch by one of src->consumers threads, with that thread's
 * ctx (ctxs[i]): with several, batches run at once (on CUDA, one batch's
 * upload and compute overlap another's).  A returned error stops the run. */
typedef onnxtl_status *(*otl_batch_fn)(void *ctx, const otl_batch *b, otl_batch_turn *turn);

onnxtl_status *otl_batches_run(const otl_batch_source *src, otl_batch_fn fn, void *const *ctxs);

#endif
