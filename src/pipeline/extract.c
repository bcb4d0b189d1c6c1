/* The extraction pipeline: batches from src/batches.c run through the
 * backbone up to the cut, and their rows go to the features file. */
#include "extract.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batches.h"
#include "calibrate.h"
#include "dtype.h"
#include "events.h"
#include "hash.h"
#include "image_model.h"
#include "model.h"
#include "status.h"

/* The model, the cut and what is known of them. */
#define MAX_STREAMS 8

typedef struct {
    onnxtl_model *model;
    onnxtl_session *sessions[MAX_STREAMS]; /* one per batch in flight */
    int n_sessions;
    otl_image_input input;
    otl_preprocess pre;  /* defaults, then what the model states, then the user's options */
    char pre_why[256];   /* what the model stated */
    const char *cut_name;
    int cut;
    uint32_t dim;
    char head[256];
    char *int8_ranges; /* --precision int8: the calibration's ranges, as text */
} backbone;

/* The rows to extract: per pipeline image, its sample and which of its
 * views; the draws that augment it. */
typedef struct {
    size_t *samples;
    uint8_t *views;
    otl_draw_key *draws; /* NULL: no augmentation */
    size_t n;
} row_list;

/* What the batch callback needs. */
typedef struct {
    const otl_extract_options *o;
    backbone *bb;
    const otl_dataset *ds;
    const row_list *todo;
    uint8_t *unread;    /* per pipeline image: it could not be read (batches come in order) */
    otl_features_writer *w;
    otl_row_tag *tags;
    otl_extract_result *r;
} extraction;

/* One consumer of batches: the shared extraction and its own session. */
typedef struct {
    extraction *x;
    onnxtl_session *session;
} stream;

static onnxtl_status *find_cut(const otl_graph *g, const char *name, int *cut) {
    char why[512];
    *cut = name ? otl_graph_find(g, name) : otl_graph_head_input(g, why, sizeof why);
    if (*cut >= 0) return NULL;
    if (name) return otl_error(ONNXTL_ERR_ARG, "%s: no tensor named '%s' (onnxtl info lists the head input)", g->path, name);
    return otl_error(ONNXTL_ERR_ARG, "%s: no classifier head found (%s); name the feature tensor with --cut", g->path,
                     why);
}

/* Settles the preprocessing, then finds the cut and its width by planning batch 1 up to it. */
static onnxtl_status *describe_backbone(backbone *b, const otl_extract_options *o) {
    const otl_graph *g = otl_model_graph(b->model);
    otl_preprocess_default(&b->pre);
    otl_image_model_defaults(b->model, &b->pre, b->pre_why, sizeof b->pre_why);
    OTL_TRY(otl_preprocess_parse(&b->pre, &o->pre));
    OTL_TRY(otl_image_model_input(b->model, &b->pre, &b->input));
    OTL_TRY(find_cut(g, o->cut, &b->cut));
    b->cut_name = g->values[b->cut].name;
    otl_graph_head_shape(g, b->cut, b->head, sizeof b->head);
    otl_tinfo input = {.dtype = ONNXTL_FLOAT, .rank = 4}, cut;
    otl_image_input_dims(&b->input, 1, input.dims);
    OTL_TRY(otl_model_shape(b->model, &input, 1, b->cut, &cut));
    int64_t count = otl_tinfo_count(&cut);
    if (count < 1 || count > UINT32_MAX / 8)
        return otl_error(ONNXTL_ERR_ARG, "%s: tensor '%s' has %lld values per image", g->path, b->cut_name, (long long)count);
    b->dim = (uint32_t)count;
    return NULL;
}

static onnxtl_status *build_meta(const otl_extract_options *o, const backbone *b, const otl_dataset *ds,
                                 char **text, size_t *len) {
    otl_features_meta m = {.cut = (char *)b->cut_name, .head = (char *)b->head, .dim = b->dim, .dtype = o->dtype,
                           .views = o->views, .augment = o->augment,
                           .int8_ranges = b->int8_ranges, .pre = b->pre, .shard_k = o->shard_k, .shard_n = o->shard_n,
                           .classes = ds->classes, .n_classes = ds->n_classes,
                           .images = ds->samples, .n_images = ds->n_samples};
    char real[PATH_MAX];
    if (!realpath(o->model_path, real)) snprintf(real, sizeof real, "%s", o->model_path);
    m.model_path = real;
    /* features from other arithmetic must not be resumed or merged into these */
    snprintf(m.compute, sizeof m.compute, "%s %s", o->session.device ? o->session.device : "cpu",
             otl_precision_name(o->session.precision));
    OTL_TRY(otl_sha256_file(o->model_path, m.model_sha256));
    return otl_features_meta_text(&m, text, len);
}

/* With --views each view decodes the file again: one that could be read
 * while another view of the same image could not (the file changed in
 * between) would leave the image without all its rows.  The run stops before
 * this batch's rows are written, and a resume, which keeps whole images only,
 * redoes that image. */
static onnxtl_status *check_views(extraction *x, const otl_batch *b) {
    for (size_t i = 0; i < b->n_bad; i++) x->unread[b->bad[i]] = 1;
    for (size_t e = b->first; e < b->first + b->count; e++) {
        if (!x->todo->views[e] || x->unread[e] == x->unread[e - 1]) continue; /* e - 1: the same image's previous view */
        const otl_sample *s = &x->ds->samples[x->todo->samples[e]];
        return otl_error(ONNXTL_ERR_IO, "%s/%s: view %d %s read but view %d %s (the file changed while extract read "
                         "it); the rows so far are kept: run the same command again to resume", x->ds->root, s->path,
                         x->todo->views[e] - 1, x->unread[e - 1] ? "could not be" : "was", x->todo->views[e],
                         x->unread[e] ? "could not" : "could");
    }
    return NULL;
}

/* The network runs on the stream's session, batches side by side; rows,
 * warnings and progress follow in order. */
static onnxtl_status *on_batch(void *ctx, const otl_batch *b, otl_batch_turn *turn) {
    const stream *sc = ctx;
    extraction *x = sc->x;
    onnxtl_tensor out = {.name = x->bb->cut_name};
    if (b->good && !(x->o->strict && b->n_bad)) {
        /* Every batch runs at the full size, the last one padded with zeros: the
         * convolutions' algorithms (Winograd or direct) depend on the batch size,
         * and each image's row must not, so that a resumed, streamed or sharded
         * run writes the bytes an uninterrupted one does. */
        onnxtl_tensor in = {.name = x->bb->input.name, .dtype = ONNXTL_FLOAT, .rank = 4, .data = b->pixels};
        otl_image_input_dims(&x->bb->input, (size_t)x->o->batch, in.dims);
        OTL_TRY(onnxtl_session_run(sc->session, &in, 1, &out, 1));
    }
    if (!otl_batch_wait_turn(turn)) return NULL;
    OTL_TRY(check_views(x, b));
    for (size_t i = 0; i < b->n_bad; i++) { /* an image's views fail together: it is counted once */
        if (x->todo->views[b->bad[i]]) continue;
        otl_events_note(x->o->events, true, "skipped %s", b->why[i]);
        x->r->skipped++;
    }
    if (x->o->strict && b->n_bad)
        return otl_error(ONNXTL_ERR_FORMAT, "stopping at a bad image (--strict): %s; the rows so far are kept for a resume",
                         b->why[0]);
    if (b->good) {
        for (size_t i = 0; i < b->good; i++) {
            const size_t sample = x->todo->samples[b->index[i]];
            const otl_sample *s = &x->ds->samples[sample];
            x->tags[i] = (otl_row_tag){(uint32_t)sample, s->label, (uint8_t)s->split, x->todo->views[b->index[i]]};
        }
        OTL_TRY(otl_features_writer_append(x->w, out.data, x->tags, b->good));
    }
    otl_events_progress(x->o->events, "extract", x->todo->draws ? "row" : "img", b->first + b->count, x->todo->n);
    if (x->o->interrupt && atomic_load_explicit(x->o->interrupt, memory_order_relaxed))
        return otl_error(ONNXTL_ERR_RUNTIME, "interrupted: the rows extracted so far are kept in %s.partial; "
                         "run the same command again to resume", x->o->out_path);
    return NULL;
}

/* Runs the pipeline over the rows left to extract. */
static onnxtl_status *run_extraction(extraction *x, const row_list *todo) {
    otl_strlist paths = {0};
    x->tags = calloc((size_t)x->o->batch, sizeof *x->tags);
    x->unread = calloc(todo->n + 1, 1);
    onnxtl_status *st = x->tags && x->unread ? otl_dataset_paths(x->ds, todo->samples, todo->n, &paths) : otl_nomem();
    otl_batch_source src = {.paths = (const char *const *)paths.items, .n = todo->n, .pre = &x->bb->pre,
                            .height = x->bb->input.height, .width = x->bb->input.width, .hwc = x->bb->input.nhwc,
                            .batch = x->o->batch, .decoders = x->o->decoders, .max_pixels = x->o->max_pixels,
                            .consumers = x->bb->n_sessions, .session = x->bb->sessions[0],
                            .augment = todo->draws ? &x->o->augment : NULL, .draws = todo->draws};
    stream streams[MAX_STREAMS];
    void *ctxs[MAX_STREAMS];
    for (int i = 0; i < x->bb->n_sessions; i++) streams[i] = (stream){x, x->bb->sessions[i]}, ctxs[i] = &streams[i];
    x->todo = todo;
    const double start = otl_now();
    otl_events_progress(x->o->events, "extract", todo->draws ? "row" : "img", 0, todo->n);
    if (!st) st = otl_batches_run(&src, on_batch, ctxs);
    x->r->seconds = otl_now() - start;
    x->r->images_per_second = x->r->seconds > 0 ? (double)todo->n / x->r->seconds : 0;
    otl_strlist_free(&paths);
    free(x->tags);
    free(x->unread);
    return st;
}

static void row_list_free(row_list *l) {
    free(l->samples);
    free(l->views);
    free(l->draws);
}

/* This shard's samples from start_image on (every n-th, deterministically),
 * each training one views times with --views; *shard_total and *resumed
 * count the shard's images, and those before start_image. */
static onnxtl_status *select_todo(const otl_extract_options *o, const otl_dataset *ds, uint32_t start_image,
                                  row_list *todo, size_t *shard_total, size_t *resumed) {
    const size_t cap = ds->n_samples * (size_t)o->views + 1; /* views <= 255: no overflow below 2^56 samples */
    todo->samples = malloc(sizeof *todo->samples * cap);
    todo->views = malloc(sizeof *todo->views * cap);
    if (o->views > 1) todo->draws = malloc(sizeof *todo->draws * cap);
    if (!todo->samples || !todo->views || (o->views > 1 && !todo->draws)) return otl_nomem();
    todo->n = *shard_total = *resumed = 0;
    for (size_t i = 0; i < ds->n_samples; i++) {
        if (i % (size_t)o->shard_n != (size_t)(o->shard_k - 1)) continue;
        (*shard_total)++;
        if (i < start_image) {
            (*resumed)++;
            continue;
        }
        const int views = otl_views_of(o->views, ds->samples[i].split);
        for (int v = 0; v < views; v++, todo->n++) {
            todo->samples[todo->n] = i;
            todo->views[todo->n] = (uint8_t)v;
            /* view v takes the draws a training run takes in epoch v + 1; the others are not augmented */
            if (todo->draws) todo->draws[todo->n] = (otl_draw_key){i, o->views > 1 && views > 1 ? (uint32_t)v + 1 : 0};
        }
    }
    return NULL;
}

static onnxtl_status *not_this_extraction(const char *out_path) {
    return otl_error(ONNXTL_ERR_ARG, "%s exists and was not made by this extraction (other model, data or options); "
                     "choose another -o, remove it, or pass --restart to replace it", out_path);
}

/* A finished file from the same extraction means there is nothing to do:
 * its header and metadata tell, without reading its rows. */

static onnxtl_status *check_existing(const char *out_path, const char *meta, size_t meta_len, bool restart, bool *done) {
    *done = false;
    FILE *f = fopen(out_path, "rb");
    if (!f) return NULL;
    fclose(f);
    otl_features *old;
    onnxtl_status *st = otl_features_open(out_path, &old);
    if (!st) {
        size_t len;
        const char *text = otl_features_meta_raw(old, &len);
        *done = len == meta_len && !memcmp(text, meta, len);
        otl_features_close(old);
    }
    onnxtl_status_release(st);
    return *done || restart ? NULL : not_this_extraction(out_path);
}

static void announce(const otl_extract_options *o, const otl_dataset *ds, const backbone *b, size_t total, size_t resumed) {
    char pre[256], shard[96] = "";
    otl_preprocess_describe(&b->pre, pre, sizeof pre);
    if (o->shard_n > 1) snprintf(shard, sizeof shard, ", shard %d/%d has %zu", o->shard_k, o->shard_n, total);
    otl_events_note(o->events, false, "data: %s: %s, %d classes, %zu images%s", ds->root, otl_layout_name(ds->layout),
                    ds->n_classes, ds->n_samples, shard);
    otl_events_note(o->events, false, "model: %s, features: '%s' (%u values per image)%s%s", o->model_path, b->cut_name,
                    b->dim, *b->head ? ", head cut away: " : "", b->head);
    otl_events_note(o->events, false, "preprocess: %s%s%s%s", pre, *b->pre_why ? " (" : "", b->pre_why,
                    *b->pre_why ? ")" : "");
    for (size_t i = 0; i < ds->unrecordable.n; i++)
        otl_events_note(o->events, true, "skipped %s/%s: its name holds a tab or a newline, which a features file "
                        "cannot record; rename it", ds->root, ds->unrecordable.items[i]);
    if (resumed) otl_events_note(o->events, false, "resuming %s.partial: %zu rows already extracted", o->out_path, resumed);
}

/* --streams sessions, one by default.  On CUDA two let one batch's upload
 * overlap another's compute; on the CPU one session already uses every core. */
static onnxtl_status *create_sessions(const otl_extract_options *o, backbone *bb) {
    const int n = o->streams > 0 ? o->streams : 1;
    if (n > MAX_STREAMS) return otl_error(ONNXTL_ERR_ARG, "--streams is at most %d", MAX_STREAMS);
    onnxtl_options opts = o->session;
    opts.calibration = bb->int8_ranges;
    for (; bb->n_sessions < n; bb->n_sessions++) OTL_TRY(onnxtl_session_create(bb->model, &opts, &bb->sessions[bb->n_sessions]));
    return NULL;
}

/* The calibration pass over a sample of the data (every shard picks the same one). */
static onnxtl_status *calibrate(const otl_extract_options *o, backbone *bb, const otl_dataset *ds) {
    size_t *picked = NULL, n = 0;
    otl_strlist paths = {0};
    otl_ranges ranges = {0};
    onnxtl_status *st = otl_calibration_sample(ds, o->calibrate ? o->calibrate : OTL_CALIBRATE_DEFAULT, &picked, &n);
    if (!st) st = otl_dataset_paths(ds, picked, n, &paths);
    const double start = otl_now();
    if (!st) otl_events_note(o->events, false, "int8: calibrating the activation scales on %zu images in fp32", n);
    otl_batch_source src = {.paths = (const char *const *)paths.items, .n = n, .pre = &bb->pre,
                            .height = bb->input.height, .width = bb->input.width, .hwc = bb->input.nhwc,
                            .batch = o->batch, .decoders = o->decoders, .max_pixels = o->max_pixels, .consumers = 1};
    if (!st) st = otl_calibrate(bb->model, &bb->input, bb->cut, &o->session, src, &ranges);
    if (!st) st = otl_ranges_text(&ranges, &bb->int8_ranges);
    if (!st) otl_events_note(o->events, false, "int8: %zu tensors calibrated in %.1f s", ranges.n, otl_now() - start);
    otl_ranges_free(&ranges);
    otl_strlist_free(&paths);
    free(picked);
    return st;
}

/* --precision int8: the scales an interrupted extraction began with, so a
 * resume never mixes them, or else a calibration pass. */
static onnxtl_status *settle_int8_ranges(const otl_extract_options *o, backbone *bb, const otl_dataset *ds) {
    if (o->session.precision != ONNXTL_PRECISION_INT8) return NULL;
    if (!o->restart) {
        OTL_TRY(otl_features_recorded_ranges(o->out_path, &bb->int8_ranges));
        /* A file there without scales is another extraction's (fp32, say):
         * refused now, not after a calibration pass. */
        if (!bb->int8_ranges && otl_features_output_exists(o->out_path)) return not_this_extraction(o->out_path);
    }
    return bb->int8_ranges ? NULL : calibrate(o, bb, ds);
}

void otl_extract_result_free(otl_extract_result *r) {
    for (int i = 0; r->classes && i < r->stats.n_classes; i++) free(r->classes[i]);
    free(r->classes);
    otl_features_stats_free(&r->stats);
}

static onnxtl_status *copy_classes(const otl_dataset *ds, otl_extract_result *r) {
    if (!(r->classes = calloc((size_t)ds->n_classes + 1, sizeof *r->classes))) return otl_nomem();
    for (int i = 0; i < ds->n_classes; i++)
        if (!(r->classes[i] = strdup(ds->classes[i]))) return otl_nomem();
    return NULL;
}

static onnxtl_status *extract_with(const otl_extract_options *o, backbone *bb, otl_dataset *ds, otl_extract_result *r) {
    char *meta = NULL;
    size_t meta_len = 0, total = 0;
    row_list todo = {0};
    otl_features_writer *w = NULL;
    uint32_t start = 0;
    uint64_t resumed = 0;
    onnxtl_status *st = settle_int8_ranges(o, bb, ds);
    if (!st) st = build_meta(o, bb, ds, &meta, &meta_len);
    if (!st) st = check_existing(o->out_path, meta, meta_len, o->restart, &r->already_complete);
    if (!st && !r->already_complete) {
        const otl_features_layout layout = {bb->dim, o->dtype, ds->n_classes, o->views};
        /* first, so that a precision this CPU lacks is the only line printed */
        st = create_sessions(o, bb);
        if (!st) st = otl_features_writer_open(o->out_path, meta, meta_len, &layout, o->restart, &w, &start, &resumed);
        if (!st) st = select_todo(o, ds, start, &todo, &total, &r->resumed);
        r->images = total;
        r->ignored = ds->ignored;
        if (!st) announce(o, ds, bb, total, (size_t)resumed);
        extraction x = {.o = o, .bb = bb, .ds = ds, .w = w, .r = r};
        if (!st) st = run_extraction(&x, &todo);
        if (!st && r->skipped == r->images && !r->resumed)
            st = otl_error(ONNXTL_ERR_FORMAT, "%s: none of the %zu images could be read; no features file written",
                           ds->root, r->images);
        if (!st) st = otl_features_writer_finish(w, &r->stats);
        if (!st) st = copy_classes(ds, r);
    }
    otl_features_writer_release(w);
    row_list_free(&todo);
    free(meta);
    return st;
}

onnxtl_status *otl_extract(const otl_extract_options *o, otl_extract_result *r) {
    memset(r, 0, sizeof *r);
    if (o->batch < 1 || o->decoders < 1 || o->shard_n < 1 || o->shard_k < 1 || o->shard_k > o->shard_n ||
        o->views < 1 || o->views > OTL_FEATURES_MAX_VIEWS || (o->views > 1 && !o->augment.crop && !o->augment.flip))
        return otl_error(ONNXTL_ERR_ARG, "bad batch, decoder, shard or view settings");
    backbone bb = {0};
    otl_dataset *ds = NULL;
    onnxtl_status *st = onnxtl_model_load(o->model_path, &bb.model);
    if (!st) st = describe_backbone(&bb, o);
    if (!st) st = otl_dataset_scan(o->data_dir, &ds);
    if (!st) st = extract_with(o, &bb, ds, r);
    for (int i = 0; i < bb.n_sessions; i++) onnxtl_session_release(bb.sessions[i]);
    onnxtl_model_release(bb.model);
    free(bb.int8_ranges);
    otl_dataset_free(ds);
    return st;
}
