#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked.h"
#include "dtype.h"

/* A file mapped read-only, or read into memory when it cannot be mapped. */
typedef struct {
    void *data;
    size_t size;
} file_bytes;

static onnxtl_status *map_file(const char *path, file_bytes *fb) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return otl_error(ONNXTL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return otl_error(ONNXTL_ERR_IO, "%s: not a regular file", path);
    }
    fb->size = (size_t)sb.st_size;
    if (fb->size == 0) {
        close(fd);
        return otl_error(ONNXTL_ERR_FORMAT, "%s: file is empty", path);
    }
    fb->data = mmap(NULL, fb->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (fb->data == MAP_FAILED)
        return otl_error(ONNXTL_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    return NULL;
}

static void unmap_file(file_bytes *fb) {
    if (fb->data && fb->data != MAP_FAILED) munmap(fb->data, fb->size);
}

/* Recognises the text files people most often mistake for a model, so the
 * error can say what to do instead of only "corrupt". */
static const char *describe_non_protobuf(const file_bytes *fb) {
    static const char lfs[] = "version https://git-lfs";
    if (fb->size >= sizeof lfs - 1 && memcmp(fb->data, lfs, sizeof lfs - 1) == 0)
        return "is a Git LFS pointer, not the model: run 'git lfs pull' to fetch the real file";
    size_t n = fb->size < 256 ? fb->size : 256, printable = 0;
    const unsigned char *p = fb->data;
    for (size_t i = 0; i < n; i++)
        printable += (p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n' || p[i] == '\r' || p[i] == '\t';
    if (printable == n) { /* the bytes end where the file does: no terminating NUL to rely on */
        if (memmem(p, n, "ir_version", 10) || memmem(p, n, "graph {", 7) || memmem(p, n, "graph{", 6))
            return "is a text-format protobuf; onnxtl reads binary .onnx files (convert it with "
                   "google.protobuf.text_format.Parse into an onnx.ModelProto, then onnx.save)";
        return "is a text file, not a binary ONNX model";
    }
    return NULL;
}

onnxtl_status *otl_proto_read_model(const char *path, Onnx__ModelProto **out) {
    file_bytes fb = {0};
    OTL_TRY(map_file(path, &fb));
    onnxtl_status *st = otl_proto_parse_model(fb.data, fb.size, path, out);
    unmap_file(&fb);
    return st;
}

onnxtl_status *otl_proto_parse_model(const void *data, size_t size, const char *name, Onnx__ModelProto **out) {
    const file_bytes fb = {(void *)data, size};
    if (!size) return otl_error(ONNXTL_ERR_FORMAT, "%s: file is empty", name);
    const char *text = describe_non_protobuf(&fb);
    if (text) return otl_error(ONNXTL_ERR_FORMAT, "%s: %s", name, text);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, fb.size, fb.data);
    if (!m)
        return otl_error(ONNXTL_ERR_FORMAT,
                         "%s: not a valid ONNX model (protobuf parse failed: truncated or corrupt "
                         "file, %zu bytes)", name, fb.size);
    if (!m->graph) {
        onnx__model_proto__free_unpacked(m, NULL);
        return otl_error(ONNXTL_ERR_FORMAT,
                         "%s: not an ONNX model (no graph in the protobuf; truncated or not a "
                         ".onnx file)", name);
    }
    *out = m;
    return NULL;
}

onnxtl_status *otl_proto_read_tensor(const char *path, Onnx__TensorProto **out) {
    file_bytes fb = {0};
    OTL_TRY(map_file(path, &fb));
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, fb.size, fb.data);
    unmap_file(&fb);
    if (!t) return otl_error(ONNXTL_ERR_FORMAT, "%s: not a valid TensorProto", path);
    *out = t;
    return NULL;
}

onnxtl_status *otl_proto_tensor_describe(const Onnx__TensorProto *t, otl_proto_tensor_info *info) {
    const char *name = t->name ? t->name : "";
    info->dtype = t->data_type;
    size_t esize = otl_dtype_size(t->data_type);
    if (!esize)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "tensor '%s': element type %s is not supported",
                         name, otl_dtype_name(t->data_type));
    if (t->n_dims > ONNXTL_MAX_RANK)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "tensor '%s': rank %zu exceeds the maximum of %d",
                         name, t->n_dims, ONNXTL_MAX_RANK);
    info->rank = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0)
            return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': negative dimension %lld", name,
                             (long long)t->dims[i]);
        info->dims[i] = t->dims[i];
    }
    int64_t count;
    if (!otl_shape_count(info->dims, info->rank, &count) ||
        !otl_mul_size((size_t)count, esize, &info->nbytes))
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': dimensions overflow (too many elements)",
                         name);
    return NULL;
}

/* External data may only name a file inside the model's folder. */
static onnxtl_status *resolve_external_path(const char *tname, const char *location,
                                            const char *model_dir, char *resolved) {
    if (!model_dir)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': a model loaded from memory cannot use external data ('%s')",
                         tname, location);
    if (location[0] == '/' || strstr(location, ".."))
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data location '%s' must be a relative path inside "
                         "the model's folder", tname, location);
    char dir_real[PATH_MAX], joined[PATH_MAX];
    if (!realpath(model_dir, dir_real))
        return otl_error(ONNXTL_ERR_IO, "cannot resolve model folder '%s': %s", model_dir,
                         strerror(errno));
    if (snprintf(joined, sizeof joined, "%s/%s", dir_real, location) >= (int)sizeof joined)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data path too long", tname);
    if (!realpath(joined, resolved))
        return otl_error(ONNXTL_ERR_IO, "tensor '%s': external data file '%s': %s", tname, location,
                         strerror(errno));
    size_t dl = strlen(dir_real);
    if (strncmp(resolved, dir_real, dl) != 0 || resolved[dl] != '/')
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data '%s' leads outside the model's folder "
                         "(through a symlink)", tname, location);
    return NULL;
}

static onnxtl_status *parse_u64(const char *tname, const char *key, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data %s '%s' is not a number",
                         tname, key, s);
    *out = v;
    return NULL;
}

/* Where an external tensor's bytes are: its file, checked to stay inside the
 * model's folder and to hold offset + length bytes. */
typedef struct {
    char path[PATH_MAX];
    const char *location;
    uint64_t offset, length;
} external_source;

static onnxtl_status *locate_external(const Onnx__TensorProto *t, size_t nbytes, const char *model_dir,
                                      external_source *x) {
    const char *tname = t->name ? t->name : "";
    x->location = NULL, x->offset = 0, x->length = nbytes;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e->key || !e->value) continue;
        if (!strcmp(e->key, "location")) x->location = e->value;
        else if (!strcmp(e->key, "offset")) OTL_TRY(parse_u64(tname, "offset", e->value, &x->offset));
        else if (!strcmp(e->key, "length")) OTL_TRY(parse_u64(tname, "length", e->value, &x->length));
    }
    if (!x->location)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data without a location", tname);
    if (x->length != nbytes)
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data length %llu does not match its dims (%zu bytes)",
                         tname, (unsigned long long)x->length, nbytes);
    OTL_TRY(resolve_external_path(tname, x->location, model_dir, x->path));
    struct stat sb;
    uint64_t end;
    if (stat(x->path, &sb) != 0)
        return otl_error(ONNXTL_ERR_IO, "tensor '%s': cannot open external data '%s': %s", tname, x->location,
                         strerror(errno));
    if (__builtin_add_overflow(x->offset, x->length, &end) || end > (uint64_t)sb.st_size)
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data offset %llu + length %llu is past the end of '%s'",
                         tname, (unsigned long long)x->offset, (unsigned long long)x->length, x->location);
    return NULL;
}

static onnxtl_status *read_external(const Onnx__TensorProto *t, size_t nbytes, const char *model_dir, void *dst) {
    const char *tname = t->name ? t->name : "";
    external_source x;
    OTL_TRY(locate_external(t, nbytes, model_dir, &x));
    int fd = open(x.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return otl_error(ONNXTL_ERR_IO, "tensor '%s': cannot open external data '%s': %s", tname,
                         x.location, strerror(errno));
    onnxtl_status *st = NULL;
    for (size_t got = 0; got < x.length && !st;) {
        ssize_t r = pread(fd, (char *)dst + got, x.length - got, (off_t)(x.offset + got));
        if (r <= 0)
            st = otl_error(ONNXTL_ERR_IO, "tensor '%s': reading external data '%s' failed: %s",
                           tname, x.location, r < 0 ? strerror(errno) : "unexpected end of file");
        else
            got += (size_t)r;
    }
    close(fd);
    return st;
}

static onnxtl_status *count_mismatch(const Onnx__TensorProto *t, const char *field, size_t have,
                                     size_t want) {
    return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': %s holds %zu values but its dims need %zu",
                     t->name ? t->name : "", field, have, want);
}

/* Narrows int32_data into the element type it stands for (int8..uint16, bool, 16-bit floats). */
static void narrow_int32(const int32_t *src, size_t n, size_t esize, void *dst) {
    for (size_t i = 0; i < n; i++) {
        if (esize == 1) ((uint8_t *)dst)[i] = (uint8_t)src[i];
        else if (esize == 2) ((uint16_t *)dst)[i] = (uint16_t)src[i];
        else ((int32_t *)dst)[i] = src[i];
    }
}

/* How many values the typed field for dtype holds, and its name. */
static size_t typed_count(const Onnx__TensorProto *t, int dtype, const char **field) {
    switch (dtype) {
    case ONNXTL_FLOAT: return *field = "float_data", t->n_float_data;
    case ONNXTL_DOUBLE: return *field = "double_data", t->n_double_data;
    case ONNXTL_INT64: return *field = "int64_data", t->n_int64_data;
    case ONNXTL_UINT32: case ONNXTL_UINT64: return *field = "uint64_data", t->n_uint64_data;
    default: return *field = "int32_data", t->n_int32_data;
    }
}

static onnxtl_status *read_typed(const Onnx__TensorProto *t, const otl_proto_tensor_info *info, size_t nbytes,
                                 void *dst) {
    size_t esize = otl_dtype_size(info->dtype), count = nbytes / esize;
    if (count == 0) return NULL; /* empty fields may be NULL */
    switch (info->dtype) {
    case ONNXTL_FLOAT:
        if (t->n_float_data != count) return count_mismatch(t, "float_data", t->n_float_data, count);
        memcpy(dst, t->float_data, info->nbytes);
        return NULL;
    case ONNXTL_DOUBLE:
        if (t->n_double_data != count)
            return count_mismatch(t, "double_data", t->n_double_data, count);
        memcpy(dst, t->double_data, info->nbytes);
        return NULL;
    case ONNXTL_INT64:
        if (t->n_int64_data != count) return count_mismatch(t, "int64_data", t->n_int64_data, count);
        memcpy(dst, t->int64_data, info->nbytes);
        return NULL;
    case ONNXTL_UINT32:
    case ONNXTL_UINT64:
        if (t->n_uint64_data != count)
            return count_mismatch(t, "uint64_data", t->n_uint64_data, count);
        for (size_t i = 0; i < count; i++) {
            if (esize == 4) ((uint32_t *)dst)[i] = (uint32_t)t->uint64_data[i];
            else ((uint64_t *)dst)[i] = t->uint64_data[i];
        }
        return NULL;
    default:
        if (t->n_int32_data != count) return count_mismatch(t, "int32_data", t->n_int32_data, count);
        narrow_int32(t->int32_data, count, esize, dst);
        return NULL;
    }
}

/* The tensor's bytes as the file stores them, nbytes of them. */
static onnxtl_status *read_stored(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                  const char *model_dir, size_t nbytes, void *dst) {
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return read_external(t, nbytes, model_dir, dst);
    if (t->has_raw_data) {
        if (t->raw_data.len != nbytes)
            return otl_error(ONNXTL_ERR_MODEL,
                             "tensor '%s': raw_data has %zu bytes but its dims need %zu",
                             t->name ? t->name : "", t->raw_data.len, nbytes);
        if (nbytes) memcpy(dst, t->raw_data.data, nbytes);
        return NULL;
    }
    return read_typed(t, info, nbytes, dst);
}

/* The bytes the file stores for the tensor: 4- and 2-bit types packed. */
static size_t stored_bytes(const otl_proto_tensor_info *info) {
    const int bits = otl_dtype_file_bits(info->dtype);
    return bits >= 8 ? info->nbytes : (info->nbytes * (size_t)bits + 7) / 8;
}

onnxtl_status *otl_proto_tensor_check_stored(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                             const char *model_dir) {
    const size_t want = stored_bytes(info), esize = otl_dtype_size(info->dtype);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        external_source x;
        return locate_external(t, want, model_dir, &x);
    }
    if (t->has_raw_data) {
        if (t->raw_data.len == want) return NULL;
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': raw_data has %zu bytes but its dims need %zu",
                         t->name ? t->name : "", t->raw_data.len, want);
    }
    const size_t count = otl_dtype_file_bits(info->dtype) >= 8 ? want / esize : want;
    const char *field;
    const size_t have = typed_count(t, info->dtype, &field);
    return !count || have == count ? NULL : count_mismatch(t, field, have, count);
}

/* 4- and 2-bit types are packed in the file (int32_data too holds one
 * packed byte per entry) and held one element per byte in memory. */
onnxtl_status *otl_proto_tensor_read(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                     const char *model_dir, void *dst) {
    if (otl_dtype_file_bits(info->dtype) >= 8) return read_stored(t, info, model_dir, info->nbytes, dst);
    const size_t count = info->nbytes, packed_n = stored_bytes(info);
    uint8_t *packed = malloc(packed_n + 1);
    if (!packed) return otl_nomem();
    onnxtl_status *st = read_stored(t, info, model_dir, packed_n, packed);
    if (!st) otl_dtype_unpack(packed, info->dtype, (int64_t)count, dst);
    free(packed);
    return st;
}
