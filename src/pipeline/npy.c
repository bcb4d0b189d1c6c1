#include "npy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "checked.h"
#include "dtype.h"
#include "status.h"

static const struct {
    const char *descr;
    int dtype;
} npy_types[] = {
    {"<f4", ONNXTL_FLOAT}, {"<f8", ONNXTL_DOUBLE}, {"<f2", ONNXTL_FLOAT16},
    {"<i8", ONNXTL_INT64}, {"<i4", ONNXTL_INT32}, {"<i2", ONNXTL_INT16},
    {"|i1", ONNXTL_INT8},  {"|u1", ONNXTL_UINT8}, {"<u2", ONNXTL_UINT16},
    {"<u4", ONNXTL_UINT32}, {"<u8", ONNXTL_UINT64}, {"|b1", ONNXTL_BOOL},
};

static const char *descr_of(int dtype) {
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == dtype) return npy_types[i].descr;
    return NULL;
}

static onnxtl_status *parse_descr(const char *path, const char *hdr, int *dtype) {
    const char *p = strstr(hdr, "'descr'");
    if (!p || !(p = strchr(p + 7, '\''))) return otl_error(ONNXTL_ERR_FORMAT, "%s: .npy header has no descr", path);
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (!strncmp(p + 1, npy_types[i].descr, 3) && p[4] == '\'') {
            *dtype = npy_types[i].dtype;
            return NULL;
        }
    }
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s: unsupported .npy dtype '%.8s' (little-endian "
                                             "numeric types only)", path, p + 1);
}

static onnxtl_status *parse_shape(const char *path, const char *hdr, onnxtl_tensor *t) {
    if (strstr(hdr, "'fortran_order': True"))
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s: Fortran-ordered .npy arrays are not supported "
                                                 "(save with np.ascontiguousarray)", path);
    const char *p = strstr(hdr, "'shape'");
    if (!p || !(p = strchr(p, '('))) return otl_error(ONNXTL_ERR_FORMAT, "%s: .npy header has no shape", path);
    p++;
    t->rank = 0;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0)
            return otl_error(ONNXTL_ERR_FORMAT, "%s: bad .npy shape", path);
        if (t->rank == ONNXTL_MAX_RANK)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s: rank above %d", path, ONNXTL_MAX_RANK);
        t->dims[t->rank++] = v;
        p = end;
    }
    return NULL;
}

static onnxtl_status *read_header(const char *path, FILE *f, char **hdr) {
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6))
        return otl_error(ONNXTL_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
    size_t len = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) { /* versions 2 and 3 use a 4-byte header length */
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) return otl_error(ONNXTL_ERR_FORMAT, "%s: truncated .npy header", path);
        len |= (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    if (len > (1u << 20)) return otl_error(ONNXTL_ERR_FORMAT, "%s: .npy header is implausibly long", path);
    if (!(*hdr = calloc(len + 1, 1))) return otl_nomem();
    if (fread(*hdr, 1, len, f) != len) return otl_error(ONNXTL_ERR_FORMAT, "%s: truncated .npy header", path);
    return NULL;
}

onnxtl_status *otl_npy_read(const char *path, onnxtl_tensor *t) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *hdr = NULL;
    onnxtl_status *st = read_header(path, f, &hdr);
    if (!st) st = parse_descr(path, hdr, &t->dtype);
    if (!st) st = parse_shape(path, hdr, t);
    int64_t count;
    size_t bytes = 0;
    if (!st && (!otl_shape_count(t->dims, t->rank, &count) ||
                !otl_mul_size((size_t)count, otl_dtype_size(t->dtype), &bytes)))
        st = otl_error(ONNXTL_ERR_FORMAT, "%s: .npy shape is too large", path);
    /* The header's claim is checked against the file before any of it is allocated. */
    struct stat sb;
    const long at = st ? 0 : ftell(f);
    if (!st && (at < 0 || fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size - (uint64_t)at < bytes))
        st = otl_error(ONNXTL_ERR_FORMAT, "%s: truncated .npy data (the header claims %zu bytes, the file holds %lld)",
                       path, bytes, at < 0 ? 0LL : (long long)(sb.st_size - at));
    if (!st && !(t->data = malloc(bytes ? bytes : 1))) st = otl_nomem();
    if (!st && fread(t->data, 1, bytes, f) != bytes)
        st = otl_error(ONNXTL_ERR_FORMAT, "%s: truncated .npy data (expected %zu bytes)", path, bytes);
    free(hdr);
    fclose(f);
    if (st) {
        free(t->data);
        t->data = NULL;
    }
    return st;
}

/* The .npy v1 preamble and header for a C-ordered array, padded to 64 bytes. */
static onnxtl_status *npy_header(const char *path, const onnxtl_tensor *t, char *out, size_t cap, size_t *len) {
    const char *descr = descr_of(t->dtype);
    if (!descr) return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s: cannot write %s as .npy", path, otl_dtype_name(t->dtype));
    char shape[256] = "";
    size_t used = 0;
    for (int i = 0; i < t->rank; i++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%lld,%s", (long long)t->dims[i],
                                 i + 1 < t->rank ? " " : "");
    if (t->rank > 1) shape[used - 1] = '\0'; /* numpy writes (a, b) but (a,) for rank 1 */
    char dict[400];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64, hlen = (size_t)n + pad + 1;
    if (10 + hlen > cap) return otl_error(ONNXTL_ERR_ARG, "%s: .npy header too long", path);
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)(hlen & 0xff);
    out[9] = (char)(hlen >> 8);
    memcpy(out + 10, dict, (size_t)n);
    memset(out + 10 + n, ' ', pad);
    out[10 + hlen - 1] = '\n';
    *len = 10 + hlen;
    return NULL;
}

/* Written whole or not at all (graph/atomic_file.h). */
struct otl_npy_stream {
    otl_atomic_file out;
};

onnxtl_status *otl_npy_stream_open(const char *path, const onnxtl_tensor *desc, otl_npy_stream **out) {
    char hdr[512];
    size_t len = 0;
    OTL_TRY(npy_header(path, desc, hdr, sizeof hdr, &len));
    otl_npy_stream *s = calloc(1, sizeof *s);
    if (!s) return otl_nomem();
    onnxtl_status *st = otl_atomic_open(path, &s->out);
    if (!st && (st = otl_atomic_write(&s->out, hdr, len))) st = otl_atomic_close(&s->out, st);
    if (st) {
        free(s);
        return st;
    }
    *out = s;
    return NULL;
}

onnxtl_status *otl_npy_stream_write(otl_npy_stream *s, const void *data, size_t bytes) {
    return otl_atomic_write(&s->out, data, bytes);
}

onnxtl_status *otl_npy_stream_close(otl_npy_stream *s, bool keep) {
    onnxtl_status *st = NULL;
    if (keep) st = otl_atomic_close(&s->out, NULL);
    else otl_atomic_discard(&s->out);
    free(s);
    return st;
}

onnxtl_status *otl_npy_write(const char *path, const onnxtl_tensor *t) {
    int64_t count = 1;
    for (int i = 0; i < t->rank; i++) count *= t->dims[i];
    otl_npy_stream *s;
    OTL_TRY(otl_npy_stream_open(path, t, &s));
    onnxtl_status *st = otl_npy_stream_write(s, t->data, (size_t)count * otl_dtype_size(t->dtype));
    onnxtl_status *cst = otl_npy_stream_close(s, st == NULL);
    if (st) {
        onnxtl_status_release(cst);
        return st;
    }
    return cst;
}
