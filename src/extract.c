/* The extraction pipeline: decoder threads fill a bounded ring of batch
 * slots while the calling thread runs the backbone on them in order and
 * appends the rows.  Memory stays at a few batches whatever the data size. */
#include "extract.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "hash.h"
#include "model.h"
#include "plan.h"
#include "progress.h"
#include "status.h"

/* What the backbone needs to know about the model and the cut. */
typedef struct {
    onnxtl_model *model;
    onnxtl_session *session;
    const char *input_name, *cut_name;
    int cut;
    uint32_t dim;
    int in_h, in_w;
    char head[256];
} backbone;

typedef struct {
    float *pixels;   /* batch x 3 x h x w */
    char **errors;   /* per image: NULL, or why it was skipped */
    size_t ready_batch; /* SIZE_MAX while empty or being filled */
} slot;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next_batch, consumed, n_batches;
    bool stop;
    const otl_extract_options *o;
    const otl_dataset *ds;
    const size_t *todo; /* sample indices left to extract, in order */
    size_t n_todo;
    size_t image_floats;
    int n_slots;
    slot *slots;
} pipeline;

static onnxtl_status *find_cut(const otl_graph *g, const char *name, int *cut) {
    *cut = name ? otl_graph_find(g, name) : otl_graph_head_input(g);
    if (*cut >= 0) return NULL;
    if (name) return otl_error(ONNXTL_ERR_ARG, "%s: no tensor named '%s' (onnxtl info lists the head input)", g->path, name);
    return otl_error(ONNXTL_ERR_ARG, "%s: no classifier head found (no Gemm/MatMul with constant weights); "
                     "name the feature tensor with --cut", g->path);
}

/* Checks the model takes one N x 3 x H x W float image and sizes the cut. */
static onnxtl_status *describe_backbone(backbone *b, const otl_extract_options *o) {
    const otl_graph *g = onnxtl_model_graph(b->model);
    if (g->n_inputs != 1) return otl_error(ONNXTL_ERR_ARG, "%s: extract needs a model with one image input, this one has %d", g->path, g->n_inputs);
    const otl_value *in = &g->values[g->inputs[0]];
    if (in->rank != 4 || in->dtype != ONNXTL_FLOAT || (in->dims[1] >= 0 && in->dims[1] != 3))
        return otl_error(ONNXTL_ERR_ARG, "%s: input '%s' is not an N x 3 x H x W float32 image", g->path, in->name);
    int h, w;
    if (!otl_preprocess_fixed_size(&o->pre, &h, &w))
        return otl_error(ONNXTL_ERR_ARG, "images of different sizes cannot be batched: give --crop or --resize HxW");
    if ((in->dims[2] >= 0 && in->dims[2] != h) || (in->dims[3] >= 0 && in->dims[3] != w))
        return otl_error(ONNXTL_ERR_ARG, "%s: the model takes %lldx%lld images but preprocessing gives %dx%d; adjust --resize/--crop",
                         g->path, (long long)in->dims[2], (long long)in->dims[3], h, w);
    b->in_h = h;
    b->in_w = w;
    b->input_name = in->name;
    OTL_TRY(find_cut(g, o->cut, &b->cut));
    b->cut_name = g->values[b->cut].name;
    otl_graph_head_shape(g, b->cut, b->head, sizeof b->head);
    otl_tinfo shape = {.dtype = ONNXTL_FLOAT, .rank = 4, .dims = {1, 3, h, w}};
    otl_plan *p;
    OTL_TRY(otl_error_wrap(otl_plan_build(g, &shape, &b->cut, 1, otl_cpu_eval, NULL, &p), "%s", g->path));
    int64_t count = otl_tinfo_count(&p->t[b->cut]);
    otl_plan_free(p);
    if (count < 1 || count > UINT32_MAX / 8)
        return otl_error(ONNXTL_ERR_ARG, "%s: tensor '%s' has %lld values per image", g->path, b->cut_name, (long long)count);
    b->dim = (uint32_t)count;
    return NULL;
}

static onnxtl_status *build_meta(const otl_extract_options *o, const backbone *b, const otl_dataset *ds,
                                 char **text, size_t *len) {
    otl_features_meta m = {.cut = (char *)b->cut_name, .head = (char *)b->head, .dim = b->dim,
                           .pre = o->pre, .shard_k = o->shard_k, .shard_n = o->shard_n,
                           .classes = ds->classes, .n_classes = ds->n_classes,
                           .images = ds->samples, .n_images = ds->n_samples};
    char real[PATH_MAX];
    if (!realpath(o->model_path, real)) snprintf(real, sizeof real, "%s", o->model_path);
    m.model_path = real;
    OTL_TRY(otl_sha256_file(o->model_path, m.model_sha256));
    return otl_features_meta_text(&m, text, len);
}

/* Decodes one batch into its slot; bad images keep a message instead. */
static void fill_slot(pipeline *pl, otl_jpeg_decoder *dec, size_t b, slot *s) {
    size_t first = b * (size_t)pl->o->batch;
    for (size_t i = 0; i < (size_t)pl->o->batch && first + i < pl->n_todo; i++) {
        const otl_sample *smp = &pl->ds->samples[pl->todo[first + i]];
        char path[8300];
        snprintf(path, sizeof path, "%s/%s", pl->ds->root, smp->path);
        otl_image img;
        onnxtl_status *st = otl_jpeg_load(dec, path, &img);
        if (!st) st = otl_preprocess_image(&pl->o->pre, &img, s->pixels + i * pl->image_floats);
        otl_image_free(&img);
        s->errors[i] = NULL;
        if (st) {
            s->errors[i] = strdup(onnxtl_status_message(st));
            if (!s->errors[i]) s->errors[i] = strdup("out of memory");
            onnxtl_status_release(st);
        }
    }
}

static void *decoder_main(void *arg) {
    pipeline *pl = arg;
    otl_jpeg_decoder *dec = NULL;
    onnxtl_status *st = otl_jpeg_decoder_create(&dec);
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        while (!pl->stop && pl->next_batch < pl->n_batches && pl->next_batch >= pl->consumed + (size_t)pl->n_slots)
            pthread_cond_wait(&pl->cv, &pl->mu);
        if (pl->stop || pl->next_batch >= pl->n_batches || st) {
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        size_t b = pl->next_batch++;
        pthread_mutex_unlock(&pl->mu);
        slot *s = &pl->slots[b % (size_t)pl->n_slots];
        fill_slot(pl, dec, b, s);
        pthread_mutex_lock(&pl->mu);
        s->ready_batch = b;
        pthread_cond_broadcast(&pl->cv);
        pthread_mutex_unlock(&pl->mu);
    }
    otl_jpeg_decoder_release(dec);
    onnxtl_status_release(st);
    return NULL;
}

static slot *wait_for_batch(pipeline *pl, size_t b) {
    slot *s = &pl->slots[b % (size_t)pl->n_slots];
    pthread_mutex_lock(&pl->mu);
    while (s->ready_batch != b) pthread_cond_wait(&pl->cv, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
    return s;
}

static void release_batch(pipeline *pl, size_t b) {
    pthread_mutex_lock(&pl->mu);
    pl->slots[b % (size_t)pl->n_slots].ready_batch = SIZE_MAX;
    pl->consumed = b + 1;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

/* Moves the good images of a slot to its front, zeroing the padding, and tags them. */
static size_t compact_slot(pipeline *pl, slot *s, size_t b, size_t count, otl_row_tag *tags, size_t *skipped) {
    size_t good = 0, first = b * (size_t)pl->o->batch;
    for (size_t i = 0; i < count; i++) {
        size_t sample = pl->todo[first + i];
        if (s->errors[i]) {
            fprintf(stderr, "onnxtl: warning: skipped %s\n", s->errors[i]);
            free(s->errors[i]);
            s->errors[i] = NULL;
            (*skipped)++;
            continue;
        }
        if (good != i)
            memmove(s->pixels + good * pl->image_floats, s->pixels + i * pl->image_floats, pl->image_floats * sizeof(float));
        const otl_sample *smp = &pl->ds->samples[sample];
        tags[good++] = (otl_row_tag){(uint32_t)sample, smp->label, (uint8_t)smp->split};
    }
    return good;
}

static onnxtl_status *run_batch(backbone *bb, pipeline *pl, slot *s, size_t good, size_t count, float **feats) {
    /* A batch with skipped images is padded to its usual size so that at most
     * two plans (full and last batch) ever exist. */
    size_t run_n = count;
    if (good < count) memset(s->pixels + good * pl->image_floats, 0, (count - good) * pl->image_floats * sizeof(float));
    onnxtl_tensor in = {.name = bb->input_name, .dtype = ONNXTL_FLOAT, .rank = 4,
                        .dims = {(int64_t)run_n, 3, bb->in_h, bb->in_w}, .data = s->pixels};
    onnxtl_tensor out = {.name = bb->cut_name};
    OTL_TRY(onnxtl_session_run(bb->session, &in, 1, &out, 1));
    *feats = out.data;
    return NULL;
}

static onnxtl_status *consume(backbone *bb, pipeline *pl, otl_features_writer *w, otl_extract_result *r) {
    otl_row_tag *tags = calloc((size_t)pl->o->batch, sizeof *tags);
    if (!tags) return otl_nomem();
    otl_progress prog;
    otl_progress_start(&prog, "extract", "img", pl->n_todo, pl->o->quiet);
    onnxtl_status *st = NULL;
    for (size_t b = 0; b < pl->n_batches && !st; b++) {
        slot *s = wait_for_batch(pl, b);
        size_t first = b * (size_t)pl->o->batch;
        size_t count = pl->n_todo - first < (size_t)pl->o->batch ? pl->n_todo - first : (size_t)pl->o->batch;
        size_t skipped_before = r->skipped;
        size_t good = compact_slot(pl, s, b, count, tags, &r->skipped);
        if (pl->o->strict && r->skipped > skipped_before)
            st = otl_error(ONNXTL_ERR_FORMAT, "stopping at a bad image (--strict); the rows so far are kept for a resume");
        float *feats = NULL;
        if (!st && good) st = run_batch(bb, pl, s, good, count, &feats);
        if (!st && good) st = otl_features_writer_append(w, feats, tags, good);
        release_batch(pl, b);
        otl_progress_update(&prog, first + count);
    }
    if (!st) otl_progress_end(&prog);
    else if (!pl->o->quiet && prog.tty) fputc('\n', stderr);
    r->seconds = otl_now() - prog.start;
    r->images_per_second = r->seconds > 0 ? (double)pl->n_todo / r->seconds : 0;
    free(tags);
    return st;
}

static onnxtl_status *run_pipeline(backbone *bb, pipeline *pl, otl_features_writer *w, otl_extract_result *r) {
    const otl_extract_options *o = pl->o;
    pl->n_batches = (pl->n_todo + (size_t)o->batch - 1) / (size_t)o->batch;
    pl->n_slots = 2 * o->decoders + 1;
    pl->image_floats = (size_t)3 * (size_t)bb->in_h * (size_t)bb->in_w;
    pl->slots = calloc((size_t)pl->n_slots, sizeof *pl->slots);
    if (!pl->slots) return otl_nomem();
    onnxtl_status *st = NULL;
    for (int i = 0; i < pl->n_slots && !st; i++) {
        pl->slots[i].ready_batch = SIZE_MAX;
        pl->slots[i].pixels = malloc(sizeof(float) * pl->image_floats * (size_t)o->batch);
        pl->slots[i].errors = calloc((size_t)o->batch, sizeof(char *));
        if (!pl->slots[i].pixels || !pl->slots[i].errors) st = otl_nomem();
    }
    pthread_t *threads = calloc((size_t)(unsigned)o->decoders, sizeof *threads);
    int started = 0;
    if (!threads) st = otl_nomem();
    for (; !st && started < o->decoders; started++)
        if (pthread_create(&threads[started], NULL, decoder_main, pl)) {
            st = otl_error(ONNXTL_ERR_RUNTIME, "cannot start decoder threads");
            break;
        }
    if (!st) st = consume(bb, pl, w, r);
    pthread_mutex_lock(&pl->mu);
    pl->stop = true;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    free(threads);
    for (int i = 0; i < pl->n_slots; i++) {
        free(pl->slots[i].pixels);
        for (int k = 0; pl->slots[i].errors && k < o->batch; k++) free(pl->slots[i].errors[k]);
        free(pl->slots[i].errors);
    }
    free(pl->slots);
    return st;
}

/* This shard's samples from start_image on: every n-th, deterministically. */
static onnxtl_status *select_todo(const otl_extract_options *o, const otl_dataset *ds, uint32_t start_image,
                                  size_t **todo, size_t *n_todo, size_t *shard_total) {
    *todo = malloc(sizeof(size_t) * (ds->n_samples + 1));
    if (!*todo) return otl_nomem();
    *n_todo = *shard_total = 0;
    for (size_t i = 0; i < ds->n_samples; i++) {
        if (i % (size_t)o->shard_n != (size_t)(o->shard_k - 1)) continue;
        (*shard_total)++;
        if (i >= start_image) (*todo)[(*n_todo)++] = i;
    }
    return NULL;
}

/* A finished file from the same extraction means there is nothing to do. */
static onnxtl_status *check_existing(const char *out_path, const char *meta, size_t meta_len, bool restart, bool *done) {
    *done = false;
    FILE *f = fopen(out_path, "rb");
    if (!f) return NULL;
    fclose(f);
    otl_features *old;
    onnxtl_status *st = otl_features_open(out_path, &old);
    if (!st) {
        const otl_features_meta *m = otl_features_meta_of(old);
        char *text;
        size_t len;
        st = otl_features_meta_text(m, &text, &len);
        if (!st) *done = len == meta_len && !memcmp(text, meta, len);
        if (!st) free(text);
        otl_features_close(old);
    }
    onnxtl_status_release(st);
    if (*done || restart) return NULL;
    return otl_error(ONNXTL_ERR_ARG, "%s exists and was not made by this extraction (other model, data or options); "
                     "choose another -o, remove it, or pass --restart to replace it", out_path);
}

static void announce(const otl_extract_options *o, const otl_dataset *ds, const backbone *b, size_t total, size_t resumed) {
    if (o->quiet) return;
    char pre[256];
    otl_preprocess_describe(&o->pre, pre, sizeof pre);
    fprintf(stderr, "data: %s: %s, %d classes, %zu images", ds->root, otl_layout_name(ds->layout), ds->n_classes, ds->n_samples);
    if (o->shard_n > 1) fprintf(stderr, ", shard %d/%d has %zu", o->shard_k, o->shard_n, total);
    fprintf(stderr, "\nmodel: %s, features: '%s' (%u values per image)%s%s\npreprocess: %s\n", o->model_path,
            b->cut_name, b->dim, *b->head ? ", head cut away: " : "", b->head, pre);
    if (resumed) fprintf(stderr, "resuming %s.partial: %zu rows already extracted\n", o->out_path, resumed);
}

static onnxtl_status *extract_with(const otl_extract_options *o, backbone *bb, otl_dataset *ds, otl_extract_result *r) {
    char *meta = NULL;
    size_t meta_len = 0, *todo = NULL, n_todo = 0, total = 0;
    otl_features_writer *w = NULL;
    uint32_t start = 0;
    uint64_t resumed = 0;
    onnxtl_status *st = build_meta(o, bb, ds, &meta, &meta_len);
    if (!st) st = check_existing(o->out_path, meta, meta_len, o->restart, &r->already_complete);
    if (!st && !r->already_complete) st = otl_features_writer_open(o->out_path, meta, meta_len, bb->dim, o->restart, &w, &start, &resumed);
    if (!st && !r->already_complete) st = select_todo(o, ds, start, &todo, &n_todo, &total);
    if (!st && !r->already_complete) {
        r->images = total;
        r->resumed = (size_t)resumed;
        r->ignored = ds->ignored;
        announce(o, ds, bb, total, r->resumed);
        onnxtl_options so = {.threads = o->threads};
        st = onnxtl_session_create(bb->model, &so, &bb->session);
        pipeline pl = {.o = o, .ds = ds, .todo = todo, .n_todo = n_todo};
        pthread_mutex_init(&pl.mu, NULL);
        pthread_cond_init(&pl.cv, NULL);
        if (!st) st = run_pipeline(bb, &pl, w, r);
        pthread_mutex_destroy(&pl.mu);
        pthread_cond_destroy(&pl.cv);
        if (!st && r->skipped == r->images - r->resumed && !r->resumed)
            st = otl_error(ONNXTL_ERR_FORMAT, "%s: none of the %zu images could be read; no features file written",
                           ds->root, r->images);
        if (!st) st = otl_features_writer_finish(w);
    }
    otl_features_writer_release(w);
    free(todo);
    free(meta);
    return st;
}

onnxtl_status *otl_extract(const otl_extract_options *o, otl_extract_result *r) {
    memset(r, 0, sizeof *r);
    if (o->batch < 1 || o->decoders < 1 || o->shard_n < 1 || o->shard_k < 1 || o->shard_k > o->shard_n)
        return otl_error(ONNXTL_ERR_ARG, "bad batch, decoder or shard settings");
    backbone bb = {0};
    otl_dataset *ds = NULL;
    onnxtl_status *st = onnxtl_model_load(o->model_path, &bb.model);
    if (!st) st = describe_backbone(&bb, o);
    if (!st) st = otl_dataset_scan(o->data_dir, &ds);
    if (!st) st = extract_with(o, &bb, ds, r);
    onnxtl_session_release(bb.session);
    onnxtl_model_release(bb.model);
    otl_dataset_free(ds);
    return st;
}
