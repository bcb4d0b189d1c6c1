#include "batches.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "status.h"

typedef struct {
    float *pixels;
    char **errors;     /* per image: NULL, or why it was skipped */
    size_t *index, *bad;
    size_t pending;     /* images of its batch not decoded yet */
    size_t ready_batch; /* SIZE_MAX while empty or being filled */
} slot;

/* Decoders take images one at a time, so all of them fill the oldest batch
 * together: the first batch is ready early and none idles at the end. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next_image, n_batches;
    size_t next_claim; /* the next batch a consumer takes */
    size_t consumed;   /* batches finished, in order; batch `consumed` has the turn */
    bool stop;
    onnxtl_status *err; /* the first consumer's error */
    const otl_batch_source *src;
    size_t image_floats;
    int n_slots;
    slot *slots;
} pipeline;

static size_t batch_count(const pipeline *pl, size_t b) {
    size_t first = b * (size_t)pl->src->batch, left = pl->src->n - first;
    return left < (size_t)pl->src->batch ? left : (size_t)pl->src->batch;
}

static void decode_one(pipeline *pl, otl_jpeg_decoder *dec, size_t image, slot *s) {
    const size_t i = image % (size_t)pl->src->batch;
    otl_image img;
    onnxtl_status *st = otl_jpeg_load(dec, pl->src->paths[image], &img);
    const otl_batch_source *src = pl->src;
    float *out = s->pixels + i * pl->image_floats;
    if (!st && src->augment && src->draws[image].epoch) {
        const otl_draw_key k = src->draws[image];
        const otl_augment_draw d = otl_augment_draws(src->augment, k.epoch, k.key, img.width, img.height);
        st = otl_augment_image(src->pre, &d, &img, src->height, src->width, src->hwc, out);
    } else if (!st) {
        st = otl_preprocess_image(src->pre, &img, src->hwc, out);
    }
    otl_image_free(&img);
    s->errors[i] = NULL;
    if (st) {
        s->errors[i] = strdup(onnxtl_status_message(st));
        if (!s->errors[i]) s->errors[i] = strdup("out of memory");
        onnxtl_status_release(st);
    }
}

/* Stops the run with st (the first error wins). */
static void fail(pipeline *pl, onnxtl_status *st) {
    pthread_mutex_lock(&pl->mu);
    if (!pl->err) pl->err = st;
    else onnxtl_status_release(st);
    pl->stop = true;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

static void *decoder_main(void *arg) {
    pipeline *pl = arg;
    /* Below the compute threads: a decoder that preempts one of them stalls
     * all of them at the next barrier. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10); /* best effort: only speed depends on it */
    otl_jpeg_decoder *dec = NULL;
    onnxtl_status *st = otl_jpeg_decoder_create(pl->src->max_pixels, &dec);
    if (st) {
        fail(pl, st);
        return NULL;
    }
    const size_t per = (size_t)pl->src->batch;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        while (!pl->stop && pl->next_image < pl->src->n && pl->next_image / per >= pl->consumed + (size_t)pl->n_slots)
            pthread_cond_wait(&pl->cv, &pl->mu);
        if (pl->stop || pl->next_image >= pl->src->n) {
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        size_t image = pl->next_image++, b = image / per;
        pthread_mutex_unlock(&pl->mu);
        slot *s = &pl->slots[b % (size_t)pl->n_slots];
        decode_one(pl, dec, image, s);
        pthread_mutex_lock(&pl->mu);
        if (--s->pending == 0) {
            s->ready_batch = b;
            pthread_cond_broadcast(&pl->cv);
        }
        pthread_mutex_unlock(&pl->mu);
    }
    otl_jpeg_decoder_release(dec);
    return NULL;
}

/* Batch b's slot once decoded, or NULL if the run stopped. */
static slot *wait_for_batch(pipeline *pl, size_t b) {
    slot *s = &pl->slots[b % (size_t)pl->n_slots];
    pthread_mutex_lock(&pl->mu);
    while (s->ready_batch != b && !pl->stop) pthread_cond_wait(&pl->cv, &pl->mu);
    bool ready = s->ready_batch == b;
    pthread_mutex_unlock(&pl->mu);
    return ready ? s : NULL;
}

struct otl_batch_turn {
    pipeline *pl;
    size_t batch;
};

bool otl_batch_wait_turn(otl_batch_turn *turn) {
    pipeline *pl = turn->pl;
    pthread_mutex_lock(&pl->mu);
    while (pl->consumed != turn->batch && !pl->stop) pthread_cond_wait(&pl->cv, &pl->mu);
    bool mine = pl->consumed == turn->batch && !pl->stop;
    pthread_mutex_unlock(&pl->mu);
    return mine;
}

static void release_batch(pipeline *pl, size_t b) {
    pthread_mutex_lock(&pl->mu);
    slot *s = &pl->slots[b % (size_t)pl->n_slots];
    s->ready_batch = SIZE_MAX;
    s->pending = b + (size_t)pl->n_slots < pl->n_batches ? batch_count(pl, b + (size_t)pl->n_slots) : 0;
    pl->consumed = b + 1;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

/* Moves the readable images to the front and zeroes the rest, up to the full
 * batch size, so a batch with skipped images, or the last one, may still run
 * at the usual size (no extra plans). */
static otl_batch compact(pipeline *pl, slot *s, size_t b) {
    otl_batch out = {.first = b * (size_t)pl->src->batch, .count = batch_count(pl, b), .pixels = s->pixels,
                     .index = s->index, .bad = s->bad, .why = s->errors};
    size_t n_bad = 0;
    for (size_t i = 0; i < out.count; i++) {
        if (s->errors[i]) {
            s->bad[n_bad] = out.first + i;
            s->errors[n_bad++] = s->errors[i];
            if (n_bad - 1 != i) s->errors[i] = NULL;
            continue;
        }
        if (out.good != i)
            memmove(s->pixels + out.good * pl->image_floats, s->pixels + i * pl->image_floats,
                    pl->image_floats * sizeof(float));
        s->index[out.good++] = out.first + i;
    }
    out.n_bad = n_bad;
    memset(s->pixels + out.good * pl->image_floats, 0,
           ((size_t)pl->src->batch - out.good) * pl->image_floats * sizeof(float));
    return out;
}

static void clear_errors(slot *s, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(s->errors[i]);
        s->errors[i] = NULL;
    }
}


/* Takes the next batch, or false when none is left or the run stopped.  A
 * consumer other than the first starts after the first batch, so that one
 * session prepares (and on CUDA tunes) before the others reuse its choices. */
static bool claim(pipeline *pl, int consumer, size_t *b) {
    pthread_mutex_lock(&pl->mu);
    while (consumer > 0 && pl->consumed == 0 && pl->next_claim < pl->n_batches && !pl->stop)
        pthread_cond_wait(&pl->cv, &pl->mu);
    bool ok = !pl->stop && pl->next_claim < pl->n_batches;
    if (ok) *b = pl->next_claim++;
    pthread_mutex_unlock(&pl->mu);
    return ok;
}

typedef struct {
    pipeline *pl;
    otl_batch_fn fn;
    void *ctx;
    int index;
} consumer;

static void *consumer_main(void *arg) {
    consumer *c = arg;
    pipeline *pl = c->pl;
    size_t b;
    while (claim(pl, c->index, &b)) {
        slot *s = wait_for_batch(pl, b);
        if (!s) break;
        otl_batch batch = compact(pl, s, b);
        otl_batch_turn turn = {pl, b};
        onnxtl_status *st = c->fn(c->ctx, &batch, &turn);
        bool in_order = otl_batch_wait_turn(&turn); /* batches finish in order */
        clear_errors(s, batch.count);
        if (st) {
            fail(pl, st);
            break;
        }
        if (!in_order) break;
        release_batch(pl, b);
    }
    return NULL;
}

/* consumers threads (the caller's among them) run fn, each with its ctx. */
static onnxtl_status *consume(pipeline *pl, otl_batch_fn fn, void *const *ctxs) {
    const int n = pl->src->consumers;
    consumer *cs = calloc((size_t)n, sizeof *cs);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    if (!cs || !threads) {
        free(cs);
        free(threads);
        return otl_nomem();
    }
    int started = 1;
    for (int i = 0; i < n; i++) cs[i] = (consumer){pl, fn, ctxs[i], i};
    for (; started < n; started++)
        if (pthread_create(&threads[started], NULL, consumer_main, &cs[started])) {
            fail(pl, otl_error(ONNXTL_ERR_RUNTIME, "cannot start consumer threads"));
            break;
        }
    consumer_main(&cs[0]);
    for (int i = 1; i < started; i++) pthread_join(threads[i], NULL);
    free(cs);
    free(threads);
    onnxtl_status *st = pl->err;
    pl->err = NULL;
    return st;
}

static onnxtl_status *alloc_slots(pipeline *pl) {
    const size_t per = (size_t)pl->src->batch;
    if (!(pl->slots = calloc((size_t)pl->n_slots, sizeof *pl->slots))) return otl_nomem();
    for (int i = 0; i < pl->n_slots; i++) {
        slot *s = &pl->slots[i];
        s->ready_batch = SIZE_MAX;
        s->pending = (size_t)i < pl->n_batches ? batch_count(pl, (size_t)i) : 0;
        size_t bytes;
        if (!otl_mul_size(sizeof(float) * pl->image_floats, per, &bytes))
            return otl_error(ONNXTL_ERR_ARG, "a batch of %zu images is too large", per);
        if (pl->src->session) OTL_TRY(onnxtl_session_alloc_host(pl->src->session, bytes, (void **)&s->pixels));
        else if (!(s->pixels = malloc(bytes))) return otl_nomem();
        s->errors = calloc(per, sizeof *s->errors);
        s->index = calloc(per, sizeof *s->index);
        s->bad = calloc(per, sizeof *s->bad);
        if (!s->errors || !s->index || !s->bad) return otl_nomem();
    }
    return NULL;
}

static void free_slots(pipeline *pl) {
    for (int i = 0; pl->slots && i < pl->n_slots; i++) {
        if (pl->slots[i].errors) clear_errors(&pl->slots[i], (size_t)pl->src->batch);
        if (pl->src->session) onnxtl_session_free_host(pl->src->session, pl->slots[i].pixels);
        else free(pl->slots[i].pixels);
        free(pl->slots[i].errors);
        free(pl->slots[i].index);
        free(pl->slots[i].bad);
    }
    free(pl->slots);
}

onnxtl_status *otl_batches_run(const otl_batch_source *src, otl_batch_fn fn, void *const *ctxs) {
    if (src->batch < 1 || src->decoders < 1 || src->consumers < 1)
        return otl_error(ONNXTL_ERR_ARG, "batch, decoders and consumers must be positive");
    /* A batch per consumer and two being filled, or more where the decoders outnumber a batch's images. */
    pipeline pl = {.src = src, .n_slots = src->consumers + 2 + (src->decoders + src->batch - 1) / src->batch,
                   .n_batches = (src->n + (size_t)src->batch - 1) / (size_t)src->batch,
                   .image_floats = (size_t)3 * (size_t)src->height * (size_t)src->width};
    pthread_mutex_init(&pl.mu, NULL);
    pthread_cond_init(&pl.cv, NULL);
    onnxtl_status *st = alloc_slots(&pl);
    pthread_t *threads = calloc((size_t)(unsigned)src->decoders, sizeof *threads);
    int started = 0;
    if (!st && !threads) st = otl_nomem();
    for (; !st && started < src->decoders; started++)
        if (pthread_create(&threads[started], NULL, decoder_main, &pl)) {
            st = otl_error(ONNXTL_ERR_RUNTIME, "cannot start decoder threads");
            break;
        }
    if (!st) st = consume(&pl, fn, ctxs);
    pthread_mutex_lock(&pl.mu);
    pl.stop = true;
    pthread_cond_broadcast(&pl.cv);
    pthread_mutex_unlock(&pl.mu);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    if (!st) st = pl.err; /* a decoder that could not start, after the consumers had finished */
    else onnxtl_status_release(pl.err);
    free(threads);
    free_slots(&pl);
    pthread_mutex_destroy(&pl.mu);
    pthread_cond_destroy(&pl.cv);
    return st;
}
