/* Reading a features file: mapped, its header and metadata checked at open,
 * its rows' checksums where the rows are used. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked.h"
#include "feature_format.h"
#include "status.h"


/* Fuzzing builds (make fuzz, OTL_FUZZING) take any checksum, so that the
 * fuzzer reaches the parsing behind it. */
static bool checksum_ok(uint32_t stored, uint32_t computed) {
#ifdef OTL_FUZZING
    (void)stored, (void)computed;
    return true;
#else
    return stored == computed;
#endif
}

static onnxtl_status *bad(const char *path, const char *what) {
    return otl_error(ONNXTL_ERR_FORMAT, "%s: %s", path, what);
}

static onnxtl_status *validate_header(otl_features *f) {
    const file_header *h = &f->h;
    if (f->size < HEADER_BYTES || memcmp(h->magic, otl_features_magic, sizeof otl_features_magic))
        return bad(f->path, "not an onnxtl features file (bad magic)");
    if (!checksum_ok(h->header_crc, header_crc(h))) return bad(f->path, "header checksum mismatch (corrupt file)");
    if (h->version != OTL_FEATURES_VERSION) return bad(f->path, "unsupported features file version");
    if (!(h->flags & FLAG_COMPLETE))
        return bad(f->path, "extraction did not finish (incomplete file); rerun extract to resume it");
    uint64_t rows_bytes, end;
    /* the metadata's dtype settles which of the two row sizes (checked at open) */
    if (h->dim == 0 || (h->row_bytes != row_bytes_for(h->dim, ONNXTL_FLOAT) &&
                        h->row_bytes != row_bytes_for(h->dim, ONNXTL_FLOAT16)) || h->meta_bytes > f->size ||
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
    if (!checksum_ok(h->meta_crc, otl_crc32c(f->map + HEADER_BYTES, h->meta_bytes)))
        return bad(f->path, "metadata checksum mismatch (corrupt file)");
    return NULL;
}

static bool row_ok(const otl_features *f, uint64_t i) {
    const unsigned char *row = f->map + f->h.rows_offset + i * f->h.row_bytes;
    row_trailer t;
    memcpy(&t, row + f->h.row_bytes - ROW_TRAILER, sizeof t);
    return checksum_ok(t.crc, otl_crc32c(row, f->h.row_bytes - 4)) && t.split < SPLIT_COUNT && t.image < f->meta.n_images &&
           t.label >= 0 && t.label < f->meta.n_classes && t.view < otl_views_of(f->meta.views, t.split);
}

/* Every row's checksum and fields, on all cores: a 2.5 GB file is read once
 * at memory speed rather than at one core's CRC speed. */
onnxtl_status *otl_features_check_rows(const otl_features *f) {
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
    st = otl_features_meta_parse((const char *)f->map + HEADER_BYTES, f->h.meta_bytes, &f->meta);
    if (st) {
        st = otl_error_wrap(st, "%s: metadata", path);
        goto fail;
    }
    if (f->meta.dim != f->h.dim) {
        st = bad(path, "metadata and header disagree on the feature dimension");
        goto fail;
    }
    if (f->h.row_bytes != row_bytes_for(f->h.dim, f->meta.dtype)) {
        st = bad(path, "metadata's dtype and the header's row size disagree (corrupt file)");
        goto fail;
    }
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

static const unsigned char *row_at(const otl_features *f, uint64_t i) {
    return f->map + f->h.rows_offset + i * f->h.row_bytes;
}

otl_row_tag otl_features_tag(const otl_features *f, uint64_t i) {
    row_trailer t;
    memcpy(&t, row_at(f, i) + f->h.row_bytes - ROW_TRAILER, sizeof t);
    return (otl_row_tag){t.image, t.label, t.split, t.view};
}

void otl_features_values(const otl_features *f, uint64_t i, float *dst) {
    otl_stored_to_floats(row_at(f, i), f->meta.dtype, f->h.dim, dst);
}

bool otl_features_finite(const otl_features *f, uint64_t i) {
    const unsigned char *row = row_at(f, i);
    for (uint32_t k = 0; k < f->h.dim; k++) {
        if (f->meta.dtype == ONNXTL_FLOAT16) {
            if ((row[2 * (size_t)k + 1] & 0x7c) == 0x7c) return false; /* all-ones exponent */
        } else {
            float x;
            memcpy(&x, row + 4 * (size_t)k, sizeof x);
            if (!isfinite(x)) return false;
        }
    }
    return true;
}

onnxtl_status *otl_features_stats_of(const otl_features *f, otl_features_stats *s) {
    float *x = malloc(sizeof(float) * f->h.dim);
    if (!x) return otl_nomem();
    onnxtl_status *st = otl_features_stats_init(s, f->meta.n_classes);
    for (uint64_t i = 0; !st && i < f->h.n_rows; i++) {
        const otl_row_tag t = otl_features_tag(f, i);
        otl_features_values(f, i, x);
        otl_features_stats_add(s, x, f->h.dim, &t);
    }
    free(x);
    return st;
}
