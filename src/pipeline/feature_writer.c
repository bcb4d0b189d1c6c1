/* Writing a features file: FILE.partial, rows synced by a thread of their
 * own, a resume from the last intact row, and an atomic rename at the end. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked.h"
#include "dtype.h"
#include "feature_format.h"
#include "status.h"

/* Rows are written and synced by a thread of their own while the caller
 * computes the next batch: one batch in flight, in two buffers. */
typedef struct {
    unsigned char *buf;
    size_t cap, bytes;
    off_t offset;
} row_block;

struct otl_features_writer {
    int fd;
    char *final_path, *partial_path;
    file_header h;
    int dtype;        /* of the stored values */
    int views;        /* rows per training image */
    size_t row_bytes;
    float *stored;    /* one row as stored, widened back: the statistics are of what the file holds */
    row_block block[2];
    int next;                  /* the block to fill next */
    pthread_t committer;       /* writing block[next ^ 1] while in_flight */
    bool in_flight;
    onnxtl_status *commit_err; /* what the last commit returned */
    otl_features_stats stats;  /* of the rows so far */
};

static onnxtl_status *write_all(int fd, const void *p, size_t n, off_t off, const char *path) {
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(fd, (const char *)p + done, n - done, off + (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return otl_error(ONNXTL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        done += (size_t)w;
    }
    return NULL;
}

static onnxtl_status *sync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return otl_nomem();
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return NULL; /* best effort: the rename itself is atomic */
    fsync(fd);
    close(fd);
    return NULL;
}

static onnxtl_status *start_fresh(otl_features_writer *w, const char *meta, size_t meta_len, uint32_t dim) {
    if (ftruncate(w->fd, 0) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot truncate: %s", w->partial_path, strerror(errno));
    memset(&w->h, 0, sizeof w->h);
    memcpy(w->h.magic, otl_features_magic, sizeof otl_features_magic);
    w->h.version = OTL_FEATURES_VERSION;
    w->h.meta_bytes = meta_len;
    w->h.rows_offset = rows_offset_for(meta_len);
    w->h.dim = dim;
    w->h.row_bytes = (uint32_t)w->row_bytes;
    w->h.meta_crc = otl_crc32c(meta, meta_len);
    w->h.header_crc = header_crc(&w->h);
    OTL_TRY(write_all(w->fd, &w->h, sizeof w->h, 0, w->partial_path));
    OTL_TRY(write_all(w->fd, meta, meta_len, HEADER_BYTES, w->partial_path));
    if (ftruncate(w->fd, (off_t)w->h.rows_offset) != 0 || fsync(w->fd) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot extend: %s", w->partial_path, strerror(errno));
    return NULL;
}

/* Stores one row's values as the file's dtype; a finite value float16
 * cannot hold would become infinity, and is refused. */
static onnxtl_status *narrow_row(otl_features_writer *w, unsigned char *row, const float *x) {
    if (w->dtype != ONNXTL_FLOAT16) {
        memcpy(row, x, sizeof(float) * w->h.dim);
        return NULL;
    }
    for (uint32_t k = 0; k < w->h.dim; k++) {
        const uint16_t h = otl_half_from_float(x[k]);
        if ((h & 0x7fff) == 0x7c00 && isfinite(x[k]))
            return otl_error(ONNXTL_ERR_ARG, "%s: feature value %g is beyond float16's range (65504); extract "
                             "with --dtype fp32 --restart", w->final_path, (double)x[k]);
        memcpy(row + 2 * (size_t)k, &h, sizeof h);
    }
    return NULL;
}

static onnxtl_status *read_row(otl_features_writer *w, uint64_t i, unsigned char *row, row_trailer *t, bool *ok) {
    const off_t off = (off_t)(w->h.rows_offset + i * w->row_bytes);
    const ssize_t got = pread(w->fd, row, w->row_bytes, off);
    if (got < 0) return otl_error(ONNXTL_ERR_IO, "%s: cannot read: %s", w->partial_path, strerror(errno));
    memcpy(t, row + w->row_bytes - ROW_TRAILER, sizeof *t);
    *ok = got == (ssize_t)w->row_bytes && otl_crc32c(row, w->row_bytes - 4) == t->crc && t->split < SPLIT_COUNT &&
          t->view < otl_views_of(w->views, t->split);
    return NULL;
}

/* Keeps the partial file's rows up to the first torn or corrupt one, and of
 * those the rows of the images whose views are all there: a resume starts at
 * the next image.  The rows kept are counted into the statistics. */
static onnxtl_status *resume_rows(otl_features_writer *w, uint32_t *next_image, uint64_t *rows_done) {
    struct stat sb;
    if (fstat(w->fd, &sb) != 0) return otl_error(ONNXTL_ERR_IO, "%s: %s", w->partial_path, strerror(errno));
    const uint64_t avail = (uint64_t)sb.st_size > w->h.rows_offset ? ((uint64_t)sb.st_size - w->h.rows_offset) / w->row_bytes : 0;
    unsigned char *row = malloc(w->row_bytes);
    if (!row) return otl_nomem();
    onnxtl_status *st = NULL;
    uint64_t whole = 0;
    bool ok = true;
    row_trailer t;
    for (uint64_t i = 0; i < avail && ok && !st; i++) {
        st = read_row(w, i, row, &t, &ok);
        if (!st && ok && t.view + 1 == otl_views_of(w->views, t.split)) whole = i + 1, *next_image = t.image + 1;
    }
    for (uint64_t i = 0; i < whole && !st; i++) {
        st = read_row(w, i, row, &t, &ok);
        w->h.split_rows[t.split]++;
        otl_stored_to_floats(row, w->dtype, w->h.dim, w->stored);
        otl_features_stats_add(&w->stats, w->stored, w->h.dim, &(otl_row_tag){t.image, t.label, t.split, t.view});
    }
    free(row);
    if (st) return st;
    w->h.n_rows = whole;
    *rows_done = whole;
    if (ftruncate(w->fd, (off_t)(w->h.rows_offset + whole * w->row_bytes)) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot truncate: %s", w->partial_path, strerror(errno));
    return NULL;
}

/* The header of a partial file, when it is intact. */
static bool read_partial_header(int fd, file_header *h) {
    struct stat sb;
    return fstat(fd, &sb) == 0 && pread(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h &&
           !memcmp(h->magic, otl_features_magic, sizeof otl_features_magic) && h->header_crc == header_crc(h) &&
           h->meta_bytes <= (uint64_t)sb.st_size - sizeof *h;
}

/* Its metadata text (malloc'ed), when its checksum holds; NULL otherwise. */
static char *read_partial_meta(int fd, const file_header *h) {
    char *text = malloc(h->meta_bytes + 1);
    if (text && pread(fd, text, h->meta_bytes, HEADER_BYTES) == (ssize_t)h->meta_bytes &&
        otl_crc32c(text, h->meta_bytes) == h->meta_crc)
        return text;
    free(text);
    return NULL;
}

static bool partial_matches(otl_features_writer *w, const char *meta, size_t meta_len, uint32_t dim) {
    file_header h;
    if (!read_partial_header(w->fd, &h) || h.meta_bytes != meta_len || h.dim != dim || h.row_bytes != w->row_bytes ||
        h.rows_offset != rows_offset_for(meta_len))
        return false;
    char *old = read_partial_meta(w->fd, &h);
    const bool same = old && !memcmp(old, meta, meta_len);
    free(old);
    if (same) w->h = h;
    return same;
}

/* A partial file that cannot be read records nothing here: it is the writer's to refuse. */
static void partial_ranges(const char *out_path, char **text) {
    char partial[PATH_MAX];
    if (snprintf(partial, sizeof partial, "%s.partial", out_path) >= (int)sizeof partial) return;
    const int fd = open(partial, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    file_header h;
    char *meta = read_partial_header(fd, &h) ? read_partial_meta(fd, &h) : NULL;
    close(fd);
    otl_features_meta m;
    onnxtl_status *st = meta ? otl_features_meta_parse(meta, h.meta_bytes, &m) : NULL;
    free(meta);
    if (!meta || st) {
        onnxtl_status_release(st);
        return;
    }
    *text = m.int8_ranges;
    m.int8_ranges = NULL;
    otl_features_meta_free(&m);
}

bool otl_features_output_exists(const char *out_path) {
    char partial[PATH_MAX];
    struct stat sb;
    if (stat(out_path, &sb) == 0) return true;
    return snprintf(partial, sizeof partial, "%s.partial", out_path) < (int)sizeof partial && stat(partial, &sb) == 0 &&
           sb.st_size > 0;
}

onnxtl_status *otl_features_recorded_ranges(const char *out_path, char **text) {
    *text = NULL;
    otl_features *f;
    onnxtl_status *st = otl_features_open(out_path, &f);
    if (st) {
        onnxtl_status_release(st);
        partial_ranges(out_path, text);
        return NULL;
    }
    const char *r = otl_features_meta_of(f)->int8_ranges;
    if (r && !(*text = strdup(r))) st = otl_nomem();
    otl_features_close(f);
    return st;
}

/* One writer per output: a second extraction onto the same file stops at
 * once and names the process that holds it.  A POSIX record lock, which the
 * system drops when that process ends, however it ends. */
static onnxtl_status *lock_partial(int fd, const char *path) {
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &l) == 0) return NULL;
    if (errno != EACCES && errno != EAGAIN) return otl_error(ONNXTL_ERR_IO, "%s: cannot lock: %s", path, strerror(errno));
    struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    const long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
    return otl_error(ONNXTL_ERR_ARG, "%s is being written by another extraction (process %ld); wait for it to "
                     "finish or choose another -o", path, pid);
}

onnxtl_status *otl_features_writer_open(const char *out_path, const char *meta, size_t meta_len,
                                        const otl_features_layout *layout, bool restart, otl_features_writer **out,
                                        uint32_t *next_image, uint64_t *rows_done) {
    otl_features_writer *w = calloc(1, sizeof *w);
    if (!w) return otl_nomem();
    w->fd = -1;
    w->dtype = layout->dtype;
    w->views = layout->views;
    w->row_bytes = row_bytes_for(layout->dim, layout->dtype);
    *next_image = 0;
    *rows_done = 0;
    onnxtl_status *st = otl_features_stats_init(&w->stats, layout->n_classes);
    if (st) goto fail;
    if (!(w->stored = malloc(sizeof(float) * layout->dim))) {
        st = otl_nomem();
        goto fail;
    }
    size_t plen = strlen(out_path) + 9;
    w->final_path = strdup(out_path);
    w->partial_path = malloc(plen);
    if (!w->final_path || !w->partial_path) {
        st = otl_nomem();
        goto fail;
    }
    snprintf(w->partial_path, plen, "%s.partial", out_path);
    w->fd = open(w->partial_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s", w->partial_path, strerror(errno));
        goto fail;
    }
    OTL_TRY_GOTO(st, lock_partial(w->fd, w->partial_path), fail);
    struct stat sb;
    bool existing = fstat(w->fd, &sb) == 0 && sb.st_size > 0;
    if (existing && partial_matches(w, meta, meta_len, layout->dim)) {
        OTL_TRY_GOTO(st, resume_rows(w, next_image, rows_done), fail);
    } else if (existing && !restart) {
        st = otl_error(ONNXTL_ERR_ARG,
                       "%s is left from an extraction with another model, data or options; "
                       "remove it or pass --restart to discard it", w->partial_path);
        goto fail;
    } else {
        OTL_TRY_GOTO(st, start_fresh(w, meta, meta_len, layout->dim), fail);
    }
    *out = w;
    return NULL;
fail:
    otl_features_writer_release(w);
    return st;
}

static onnxtl_status *commit(otl_features_writer *w, const row_block *b) {
    OTL_TRY(write_all(w->fd, b->buf, b->bytes, b->offset, w->partial_path));
    if (fdatasync(w->fd) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: sync failed: %s", w->partial_path, strerror(errno));
    return NULL;
}

static void *commit_main(void *arg) {
    otl_features_writer *w = arg;
    w->commit_err = commit(w, &w->block[w->next ^ 1]);
    return NULL;
}

/* Waits for the block in flight; returns what its commit returned. */
static onnxtl_status *wait_commit(otl_features_writer *w) {
    if (!w->in_flight) return NULL;
    pthread_join(w->committer, NULL);
    w->in_flight = false;
    onnxtl_status *st = w->commit_err;
    w->commit_err = NULL;
    return st;
}

/* Serialises rows (features, tag, checksum) into block b. */
static onnxtl_status *stage(otl_features_writer *w, row_block *b, const float *feats, const otl_row_tag *tags,
                            size_t n) {
    size_t need;
    if (!otl_mul_size(n, w->row_bytes, &need)) return otl_nomem();
    if (need > b->cap) {
        unsigned char *p = realloc(b->buf, need);
        if (!p) return otl_nomem();
        b->buf = p;
        b->cap = need;
    }
    const size_t fbytes = w->row_bytes - ROW_TRAILER;
    for (size_t i = 0; i < n; i++) {
        unsigned char *row = b->buf + i * w->row_bytes;
        OTL_TRY(narrow_row(w, row, feats + i * w->h.dim));
        row_trailer t = {.image = tags[i].image, .label = tags[i].label, .split = tags[i].split, .view = tags[i].view};
        memcpy(row + fbytes, &t, sizeof t);
        t.crc = otl_crc32c(row, w->row_bytes - 4);
        memcpy(row + fbytes, &t, sizeof t);
    }
    for (size_t i = 0; i < n; i++) { /* counted once every row is staged: a refused batch counts nothing */
        otl_stored_to_floats(b->buf + i * w->row_bytes, w->dtype, w->h.dim, w->stored);
        w->h.split_rows[tags[i].split]++;
        otl_features_stats_add(&w->stats, w->stored, w->h.dim, &tags[i]);
    }
    b->bytes = need;
    b->offset = (off_t)(w->h.rows_offset + w->h.n_rows * w->row_bytes);
    w->h.n_rows += n;
    return NULL;
}

onnxtl_status *otl_features_writer_append(otl_features_writer *w, const float *feats,
                                          const otl_row_tag *tags, size_t n) {
    OTL_TRY(wait_commit(w));
    OTL_TRY(stage(w, &w->block[w->next], feats, tags, n));
    w->next ^= 1;
    if (pthread_create(&w->committer, NULL, commit_main, w) == 0) {
        w->in_flight = true;
        return NULL;
    }
    return commit(w, &w->block[w->next ^ 1]); /* no thread: write it here */
}

onnxtl_status *otl_features_writer_finish(otl_features_writer *w, otl_features_stats *stats) {
    OTL_TRY(wait_commit(w));
    w->h.flags |= FLAG_COMPLETE;
    w->h.header_crc = header_crc(&w->h);
    OTL_TRY(write_all(w->fd, &w->h, sizeof w->h, 0, w->partial_path));
    if (fsync(w->fd) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: sync failed: %s", w->partial_path, strerror(errno));
    if (rename(w->partial_path, w->final_path) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot rename to %s: %s", w->partial_path,
                         w->final_path, strerror(errno));
    OTL_TRY(sync_dir_of(w->final_path));
    if (stats) {
        *stats = w->stats;
        w->stats.class_rows = NULL; /* now the caller's */
    }
    return NULL;
}

void otl_features_writer_release(otl_features_writer *w) {
    if (!w) return;
    onnxtl_status_release(wait_commit(w)); /* the rows so far stay for a resume */
    if (w->fd >= 0) close(w->fd);
    free(w->final_path);
    free(w->partial_path);
    free(w->block[0].buf);
    free(w->block[1].buf);
    free(w->stored);
    otl_features_stats_free(&w->stats);
    free(w);
}

