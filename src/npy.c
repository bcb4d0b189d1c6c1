#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

onnxtl_status *otl_npy_write(const char *path, const onnxtl_tensor *t) {
    const char *descr = descr_of(t->dtype);
    if (!descr) return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s: cannot write %s as .npy", path, otl_dtype_name(t->dtype));
    char shape[256] = "", hdr[512];
    size_t used = 0;
    for (int i = 0; i < t->rank; i++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%lld,%s", (long long)t->dims[i],
                                 i + 1 < t->rank ? " " : "");
    if (t->rank > 1) shape[used - 1] = '\0'; /* numpy writes (a, b) but (a,) for rank 1 */
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return otl_error(ONNXTL_ERR_ARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return otl_error(ONNXTL_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int64_t count = 1;
    for (int i = 0; i < t->rank; i++) count *= t->dims[i];
    size_t bytes = (size_t)count * otl_dtype_size(t->dtype);
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(t->data, 1, bytes, f) == bytes;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return otl_error(ONNXTL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return NULL;
}
