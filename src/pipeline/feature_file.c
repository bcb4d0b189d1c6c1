#include "feature_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked.h"
#include "hash.h"
#include "status.h"

static const char magic[8] = {'O', 'T', 'L', 'F', 'E', 'A', 'T', '1'};
enum { FLAG_COMPLETE = 1, HEADER_BYTES = 128, ROW_TRAILER = 16 };

/* Fixed little-endian header at offset 0 (the README documents the format). */
typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t flags;
    uint64_t meta_bytes;
    uint64_t rows_offset;
    uint64_t n_rows;
    uint32_t dim;
    uint32_t row_bytes;
    uint64_t split_rows[SPLIT_COUNT];
    uint32_t meta_crc;
    uint32_t header_crc; /* CRC-32C of the bytes before it */
    uint8_t reserved[40];
} file_header;
_Static_assert(sizeof(file_header) == HEADER_BYTES, "header layout");

/* The 16 bytes after a row's features. */
typedef struct {
    uint32_t image;
    int32_t label;
    uint8_t split;
    uint8_t pad[3];
    uint32_t crc; /* CRC-32C of the row's features and the fields above */
} row_trailer;
_Static_assert(sizeof(row_trailer) == ROW_TRAILER, "row layout");

static uint64_t rows_offset_for(uint64_t meta_bytes) { return (HEADER_BYTES + meta_bytes + 63) & ~(uint64_t)63; }
static size_t row_bytes_for(uint32_t dim) { return (size_t)dim * sizeof(float) + ROW_TRAILER; }
static uint32_t header_crc(const file_header *h) { return otl_crc32c(h, offsetof(file_header, header_crc)); }

/* ---- metadata text ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

static onnxtl_status *appendf(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static onnxtl_status *appendf(text_buf *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return otl_error(ONNXTL_ERR_RUNTIME, "metadata formatting failed");
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return NULL;
        }
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *b = realloc(t->buf, cap);
        if (!b) return otl_nomem();
        t->buf = b;
        t->cap = cap;
    }
}

onnxtl_status *otl_features_meta_text(const otl_features_meta *m, char **text, size_t *len) {
    text_buf t = {0};
    otl_preprocess_text pt;
    otl_preprocess_to_text(&m->pre, &pt);
    onnxtl_status *st = appendf(&t,
        "onnxtl-features %d\nmodel=%s\nmodel_sha256=%s\ncut=%s\nhead=%s\ndtype=float32\ndim=%u\n"
        "resize=%s\ncrop=%s\nmean=%s\nstd=%s\nshard=%d/%d\n",
        OTL_FEATURES_VERSION, m->model_path, m->model_sha256, m->cut, m->head, m->dim, pt.resize, pt.crop,
        pt.mean, pt.std, m->shard_k, m->shard_n);
    for (int i = 0; !st && i < m->n_classes; i++) st = appendf(&t, "class=%s\n", m->classes[i]);
    for (size_t i = 0; !st && i < m->n_images; i++)
        st = appendf(&t, "image=%s\t%d\t%s\n", otl_split_names[m->images[i].split], m->images[i].label,
                     m->images[i].path);
    if (st) {
        free(t.buf);
        return st;
    }
    *text = t.buf;
    *len = t.len;
    return NULL;
}

void otl_features_meta_free(otl_features_meta *m) {
    free(m->model_path);
    free(m->cut);
    free(m->head);
    for (int i = 0; i < m->n_classes; i++) free(m->classes[i]);
    free(m->classes);
    for (size_t i = 0; i < m->n_images; i++) free(m->images[i].path);
    free(m->images);
    memset(m, 0, sizeof *m);
}

static int split_index(const char *s) {
    for (int i = 0; i < SPLIT_COUNT; i++)
        if (!strcmp(s, otl_split_names[i])) return i;
    return -1;
}

static onnxtl_status *parse_image_line(otl_features_meta *m, char *v) {
    char *tab1 = strchr(v, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    if (!tab2) return otl_error(ONNXTL_ERR_FORMAT, "malformed image line");
    *tab1 = *tab2 = '\0';
    otl_sample *s = &m->images[m->n_images];
    s->split = split_index(v);
    char *end;
    long label = strtol(tab1 + 1, &end, 10);
    if (s->split < 0 || *end || label < 0 || label >= m->n_classes)
        return otl_error(ONNXTL_ERR_FORMAT, "image line with a bad split or label");
    s->label = (int)label;
    if (!(s->path = strdup(tab2 + 1))) return otl_nomem();
    m->n_images++;
    return NULL;
}

static onnxtl_status *dup_into(char **dst, const char *v) {
    free(*dst);
    return (*dst = strdup(v)) ? NULL : otl_nomem();
}

static onnxtl_status *parse_line(otl_features_meta *m, char *line) {
    char *eq = strchr(line, '=');
    if (!eq) return NULL;
    *eq = '\0';
    const char *k = line;
    char *v = eq + 1;
    if (!strcmp(k, "model")) return dup_into(&m->model_path, v);
    if (!strcmp(k, "model_sha256")) snprintf(m->model_sha256, sizeof m->model_sha256, "%s", v);
    else if (!strcmp(k, "cut")) return dup_into(&m->cut, v);
    else if (!strcmp(k, "head")) return dup_into(&m->head, v);
    else if (!strcmp(k, "dim")) m->dim = (uint32_t)strtoul(v, NULL, 10);
    else if (!strcmp(k, "resize")) return otl_preprocess_parse(&m->pre, v, NULL, NULL, NULL);
    else if (!strcmp(k, "crop")) return otl_preprocess_parse(&m->pre, NULL, v, NULL, NULL);
    else if (!strcmp(k, "mean")) return otl_preprocess_parse(&m->pre, NULL, NULL, v, NULL);
    else if (!strcmp(k, "std")) return otl_preprocess_parse(&m->pre, NULL, NULL, NULL, v);
    else if (!strcmp(k, "shard") && sscanf(v, "%d/%d", &m->shard_k, &m->shard_n) != 2)
        return otl_error(ONNXTL_ERR_FORMAT, "bad shard line");
    else if (!strcmp(k, "class")) {
        if (m->n_images) return otl_error(ONNXTL_ERR_FORMAT, "class line after image lines");
        char **c = realloc(m->classes, sizeof *c * (size_t)(m->n_classes + 1));
        if (!c) return otl_nomem();
        m->classes = c;
        return (m->classes[m->n_classes++] = strdup(v)) ? NULL : otl_nomem();
    } else if (!strcmp(k, "image")) {
        return parse_image_line(m, v);
    }
    return NULL;
}

/* Parses the metadata block; the image table is sized from its line count. */
static onnxtl_status *parse_meta(const char *text, size_t len, otl_features_meta *m) {
    memset(m, 0, sizeof *m);
    otl_preprocess_default(&m->pre);
    char *copy = malloc(len + 1);
    if (!copy) return otl_nomem();
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += copy[i] == '\n';
    onnxtl_status *st = NULL;
    if (strncmp(copy, "onnxtl-features ", 16)) st = otl_error(ONNXTL_ERR_FORMAT, "metadata does not start with 'onnxtl-features'");
    else if (!(m->images = calloc(lines, sizeof *m->images))) st = otl_nomem();
    char *save = NULL;
    for (char *line = st ? NULL : strtok_r(copy, "\n", &save); line && !st; line = strtok_r(NULL, "\n", &save))
        st = parse_line(m, line);
    free(copy);
    if (!st && (!m->model_path || !m->cut || !m->head || m->dim == 0 || m->n_classes < 1))
        st = otl_error(ONNXTL_ERR_FORMAT, "metadata lacks model, cut, head, dim or classes");
    if (st) otl_features_meta_free(m);
    return st;
}

/* ---- writing ---- */

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
    size_t row_bytes;
    row_block block[2];
    int next;                  /* the block to fill next */
    pthread_t committer;       /* writing block[next ^ 1] while in_flight */
    bool in_flight;
    onnxtl_status *commit_err; /* what the last commit returned */
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
    memcpy(w->h.magic, magic, sizeof magic);
    w->h.version = OTL_FEATURES_VERSION;
    w->h.meta_bytes = meta_len;
    w->h.rows_offset = rows_offset_for(meta_len);
    w->h.dim = dim;
    w->h.row_bytes = (uint32_t)row_bytes_for(dim);
    w->h.meta_crc = otl_crc32c(meta, meta_len);
    w->h.header_crc = header_crc(&w->h);
    OTL_TRY(write_all(w->fd, &w->h, sizeof w->h, 0, w->partial_path));
    OTL_TRY(write_all(w->fd, meta, meta_len, HEADER_BYTES, w->partial_path));
    if (ftruncate(w->fd, (off_t)w->h.rows_offset) != 0 || fsync(w->fd) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot extend: %s", w->partial_path, strerror(errno));
    return NULL;
}

/* Keeps the partial file's rows up to the first torn or corrupt one. */
static onnxtl_status *resume_rows(otl_features_writer *w, uint32_t *next_image, uint64_t *rows_done) {
    struct stat sb;
    if (fstat(w->fd, &sb) != 0) return otl_error(ONNXTL_ERR_IO, "%s: %s", w->partial_path, strerror(errno));
    uint64_t avail = (uint64_t)sb.st_size > w->h.rows_offset ? ((uint64_t)sb.st_size - w->h.rows_offset) / w->row_bytes : 0;
    unsigned char *row = malloc(w->row_bytes);
    if (!row) return otl_nomem();
    uint64_t good = 0;
    for (; good < avail; good++) {
        off_t off = (off_t)(w->h.rows_offset + good * w->row_bytes);
        if (pread(w->fd, row, w->row_bytes, off) != (ssize_t)w->row_bytes) break;
        row_trailer t;
        memcpy(&t, row + w->row_bytes - ROW_TRAILER, sizeof t);
        if (otl_crc32c(row, w->row_bytes - 4) != t.crc || t.split >= SPLIT_COUNT) break;
        w->h.split_rows[t.split]++;
        *next_image = t.image + 1;
    }
    free(row);
    w->h.n_rows = good;
    *rows_done = good;
    if (ftruncate(w->fd, (off_t)(w->h.rows_offset + good * w->row_bytes)) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot truncate: %s", w->partial_path, strerror(errno));
    return NULL;
}

static bool partial_matches(otl_features_writer *w, const char *meta, size_t meta_len) {
    file_header h;
    if (pread(w->fd, &h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h.magic, magic, sizeof magic) ||
        h.header_crc != header_crc(&h) || h.meta_bytes != meta_len)
        return false;
    char *old = malloc(meta_len + 1);
    bool same = old && pread(w->fd, old, meta_len, HEADER_BYTES) == (ssize_t)meta_len &&
                !memcmp(old, meta, meta_len);
    free(old);
    if (same) w->h = h;
    return same;
}

onnxtl_status *otl_features_writer_open(const char *out_path, const char *meta, size_t meta_len,
                                        uint32_t dim, bool restart, otl_features_writer **out,
                                        uint32_t *next_image, uint64_t *rows_done) {
    otl_features_writer *w = calloc(1, sizeof *w);
    if (!w) return otl_nomem();
    w->fd = -1;
    w->row_bytes = row_bytes_for(dim);
    *next_image = 0;
    *rows_done = 0;
    onnxtl_status *st = NULL;
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
    struct stat sb;
    bool existing = fstat(w->fd, &sb) == 0 && sb.st_size > 0;
    if (existing && partial_matches(w, meta, meta_len)) {
        OTL_TRY_GOTO(st, resume_rows(w, next_image, rows_done), fail);
    } else if (existing && !restart) {
        st = otl_error(ONNXTL_ERR_ARG,
                       "%s is left from an extraction with another model, data or options; "
                       "remove it or pass --restart to discard it", w->partial_path);
        goto fail;
    } else {
        OTL_TRY_GOTO(st, start_fresh(w, meta, meta_len, dim), fail);
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
    const size_t fbytes = (size_t)w->h.dim * sizeof(float);
    for (size_t i = 0; i < n; i++) {
        unsigned char *row = b->buf + i * w->row_bytes;
        memcpy(row, feats + i * w->h.dim, fbytes);
        row_trailer t = {.image = tags[i].image, .label = tags[i].label, .split = tags[i].split};
        memcpy(row + fbytes, &t, sizeof t);
        t.crc = otl_crc32c(row, w->row_bytes - 4);
        memcpy(row + fbytes, &t, sizeof t);
        w->h.split_rows[tags[i].split]++;
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

onnxtl_status *otl_features_writer_finish(otl_features_writer *w) {
    OTL_TRY(wait_commit(w));
    w->h.flags |= FLAG_COMPLETE;
    w->h.header_crc = header_crc(&w->h);
    OTL_TRY(write_all(w->fd, &w->h, sizeof w->h, 0, w->partial_path));
    if (fsync(w->fd) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: sync failed: %s", w->partial_path, strerror(errno));
    if (rename(w->partial_path, w->final_path) != 0)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot rename to %s: %s", w->partial_path,
                         w->final_path, strerror(errno));
    return sync_dir_of(w->final_path);
}

void otl_features_writer_release(otl_features_writer *w) {
    if (!w) return;
    onnxtl_status_release(wait_commit(w)); /* the rows so far stay for a resume */
    if (w->fd >= 0) close(w->fd);
    free(w->final_path);
    free(w->partial_path);
    free(w->block[0].buf);
    free(w->block[1].buf);
    free(w);
}

/* ---- reading ---- */

struct otl_features {
    char *path;
    const unsigned char *map;
    size_t size;
    file_header h;
    otl_features_meta meta;
};

static onnxtl_status *bad(const char *path, const char *what) {
    return otl_error(ONNXTL_ERR_FORMAT, "%s: %s", path, what);
}

static onnxtl_status *validate_header(otl_features *f) {
    const file_header *h = &f->h;
    if (f->size < HEADER_BYTES || memcmp(h->magic, magic, sizeof magic))
        return bad(f->path, "not an onnxtl features file (bad magic)");
    if (h->header_crc != header_crc(h)) return bad(f->path, "header checksum mismatch (corrupt file)");
    if (h->version != OTL_FEATURES_VERSION) return bad(f->path, "unsupported features file version");
    if (!(h->flags & FLAG_COMPLETE))
        return bad(f->path, "extraction did not finish (incomplete file); rerun extract to resume it");
    uint64_t rows_bytes, end;
    if (h->dim == 0 || h->row_bytes != row_bytes_for(h->dim) || h->meta_bytes > f->size ||
        h->rows_offset != rows_offset_for(h->meta_bytes) ||
        __builtin_mul_overflow(h->n_rows, (uint64_t)h->row_bytes, &rows_bytes) ||
        __builtin_add_overflow(h->rows_offset, rows_bytes, &end))
        return bad(f->path, "inconsistent header (corrupt file)");
    if (end != f->size) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: expected %llu bytes for %llu rows, found %zu",
                 end > f->size ? "truncated" : "trailing bytes", (unsigned long long)end,
                 (unsigned long long)h->n_rows, f->size);
        return bad(f->path, msg);
    }
    uint64_t total = 0;
    for (int i = 0; i < SPLIT_COUNT; i++) total += h->split_rows[i];
    if (total != h->n_rows) return bad(f->path, "split counts disagree with the row count");
    if (otl_crc32c(f->map + HEADER_BYTES, h->meta_bytes) != h->meta_crc)
        return bad(f->path, "metadata checksum mismatch (corrupt file)");
    return NULL;
}

static bool row_ok(const otl_features *f, uint64_t i) {
    const unsigned char *row = f->map + f->h.rows_offset + i * f->h.row_bytes;
    row_trailer t;
    memcpy(&t, row + f->h.row_bytes - ROW_TRAILER, sizeof t);
    return otl_crc32c(row, f->h.row_bytes - 4) == t.crc && t.split < SPLIT_COUNT && t.image < f->meta.n_images &&
           t.label >= 0 && t.label < f->meta.n_classes;
}

/* Every row's checksum and fields, on all cores: a 2.5 GB file is read once
 * at memory speed rather than at one core's CRC speed. */
static onnxtl_status *validate_rows(const otl_features *f) {
    const int64_t n = (int64_t)f->h.n_rows;
    int64_t first_bad = n;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
    for (int64_t i = 0; i < n; i++)
        if (i < first_bad && !row_ok(f, (uint64_t)i)) first_bad = i;
    if (first_bad == n) return NULL;
    return otl_error(ONNXTL_ERR_FORMAT, "%s: row %lld is corrupt (checksum or fields)", f->path, (long long)first_bad);
}

onnxtl_status *otl_features_open(const char *path, otl_features **out) {
    otl_features *f = calloc(1, sizeof *f);
    if (!f) return otl_nomem();
    onnxtl_status *st = NULL;
    int fd = -1;
    if (!(f->path = strdup(path))) {
        st = otl_nomem();
        goto fail;
    }
    struct stat sb;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0) {
        st = otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    f->size = (size_t)sb.st_size;
    if (f->size < HEADER_BYTES) {
        st = bad(path, f->size ? "truncated (shorter than the header)" : "empty file");
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = otl_error(ONNXTL_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        goto fail;
    }
    memcpy(&f->h, f->map, sizeof f->h);
    OTL_TRY_GOTO(st, validate_header(f), fail);
    st = parse_meta((const char *)f->map + HEADER_BYTES, f->h.meta_bytes, &f->meta);
    if (st) {
        st = otl_error_wrap(st, "%s: metadata", path);
        goto fail;
    }
    if (f->meta.dim != f->h.dim) {
        st = bad(path, "metadata and header disagree on the feature dimension");
        goto fail;
    }
    OTL_TRY_GOTO(st, validate_rows(f), fail);
    close(fd);
    *out = f;
    return NULL;
fail:
    if (fd >= 0) close(fd);
    otl_features_close(f);
    return st;
}

void otl_features_close(otl_features *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->size);
    otl_features_meta_free(&f->meta);
    free(f->path);
    free(f);
}

const otl_features_meta *otl_features_meta_of(const otl_features *f) { return &f->meta; }
uint64_t otl_features_rows(const otl_features *f) { return f->h.n_rows; }
const uint64_t *otl_features_split_rows(const otl_features *f) { return f->h.split_rows; }
const char *otl_features_path(const otl_features *f) { return f->path; }

const char *otl_features_meta_raw(const otl_features *f, size_t *len) {
    *len = f->h.meta_bytes;
    return (const char *)f->map + HEADER_BYTES;
}

const float *otl_features_row(const otl_features *f, uint64_t i, otl_row_tag *tag) {
    const unsigned char *row = f->map + f->h.rows_offset + i * f->h.row_bytes;
    if (tag) {
        row_trailer t;
        memcpy(&t, row + f->h.row_bytes - ROW_TRAILER, sizeof t);
        *tag = (otl_row_tag){t.image, t.label, t.split};
    }
    return (const float *)row;
}

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
    onnxtl_status *st = otl_features_writer_open(out_path, text, len, dim, true, &w, &next, &done);
    free(text);
    uint64_t *pos = calloc((size_t)n, sizeof *pos);
    float *feats = malloc(sizeof(float) * dim * MERGE_CHUNK);
    otl_row_tag tags[MERGE_CHUNK];
    if (!st && (!pos || !feats)) st = otl_nomem();
    /* k-way merge by image index reproduces the unsharded row order. */
    for (size_t k = 0; !st;) {
        int best = -1;
        otl_row_tag bt = {0}, t;
        for (int i = 0; i < n; i++) {
            if (pos[i] >= in[i]->h.n_rows) continue;
            otl_features_row(in[i], pos[i], &t);
            if (best < 0 || t.image < bt.image) best = i, bt = t;
        }
        if (best >= 0) {
            memcpy(feats + k * dim, otl_features_row(in[best], pos[best]++, NULL), sizeof(float) * dim);
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
    if (!st) st = otl_features_writer_finish(w);
    otl_features_writer_release(w);
    return st;
}
