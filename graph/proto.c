#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "dtype.h"
#include "wire.h"

/* Recognises the text files people most often mistake for a model, so the
 * error can say what to do instead of only "corrupt". */
static const char *describe_non_protobuf(const uint8_t *p, size_t size) {
    static const char lfs[] = "version https://git-lfs";
    if (size >= sizeof lfs - 1 && memcmp(p, lfs, sizeof lfs - 1) == 0)
        return "is a Git LFS pointer, not the model: run 'git lfs pull' to fetch the real file";
    size_t n = size < 256 ? size : 256, printable = 0;
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

static void *model_alloc(void *unused, size_t size) {
    return malloc(size);
}

/* Payloads belong to the model's bytes, everything else to malloc. */
static void model_free(void *model, void *p) {
    const otl_proto_model *m = model;
    if ((const uint8_t *)p >= m->bytes && (const uint8_t *)p < m->bytes + m->size) return;
    free(p);
}

static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Points raw_data at the payload the skeleton's reference names and drops
 * the reference, so that the message packs again as the file had it. */
static void attach_payload(const otl_proto_model *m, Onnx__TensorProto *t) {
    size_t kept = 0;
    for (size_t i = 0; i < t->base.n_unknown_fields; i++) {
        ProtobufCMessageUnknownField *u = &t->base.unknown_fields[i];
        /* protobuf-c keeps an unknown field's length prefix, one byte here, with its bytes */
        if (u->tag != OTL_WIRE_PAYLOAD_FIELD || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED ||
            u->len != 1 + OTL_WIRE_PAYLOAD_REF_BYTES || u->data[0] != OTL_WIRE_PAYLOAD_REF_BYTES) {
            t->base.unknown_fields[kept++] = *u;
            continue;
        }
        const uint64_t offset = load_le64(u->data + 1), len = load_le64(u->data + 9);
        if (offset <= m->size && len <= m->size - offset) { /* the skeleton wrote it so; checked all the same */
            t->raw_data.data = len ? (uint8_t *)m->bytes + offset : NULL; /* as protobuf-c leaves empty bytes */
            t->raw_data.len = len;
            t->has_raw_data = 1;
        }
        free(u->data);
    }
    t->base.n_unknown_fields = kept;
}

/* Every place otl_wire_skeleton rewrites a tensor, in the same order of nesting. */
static void attach_graph(const otl_proto_model *m, Onnx__GraphProto *g);

static void attach_sparse(const otl_proto_model *m, Onnx__SparseTensorProto *s) {
    if (s->values) attach_payload(m, s->values);
    if (s->indices) attach_payload(m, s->indices);
}

static void attach_node(const otl_proto_model *m, Onnx__NodeProto *n) {
    for (size_t i = 0; i < n->n_attribute; i++) {
        Onnx__AttributeProto *a = n->attribute[i];
        if (a->t) attach_payload(m, a->t);
        for (size_t k = 0; k < a->n_tensors; k++) attach_payload(m, a->tensors[k]);
        if (a->g) attach_graph(m, a->g);
        for (size_t k = 0; k < a->n_graphs; k++) attach_graph(m, a->graphs[k]);
        if (a->sparse_tensor) attach_sparse(m, a->sparse_tensor);
        for (size_t k = 0; k < a->n_sparse_tensors; k++) attach_sparse(m, a->sparse_tensors[k]);
    }
}

static void attach_graph(const otl_proto_model *m, Onnx__GraphProto *g) {
    for (size_t i = 0; i < g->n_initializer; i++) attach_payload(m, g->initializer[i]);
    for (size_t i = 0; i < g->n_sparse_initializer; i++) attach_sparse(m, g->sparse_initializer[i]);
    for (size_t i = 0; i < g->n_node; i++) attach_node(m, g->node[i]);
}

static void attach_model(const otl_proto_model *m) {
    if (m->proto->graph) attach_graph(m, m->proto->graph);
    for (size_t i = 0; i < m->proto->n_functions; i++)
        for (size_t k = 0; k < m->proto->functions[i]->n_node; k++) attach_node(m, m->proto->functions[i]->node[k]);
}

/* protobuf-c copies every bytes field it parses, so it is given the model's
 * skeleton instead and the payloads are attached where they lie.  Bytes the
 * skeleton cannot read are given to protobuf-c as they are, to report. */
static Onnx__ModelProto *unpack_without_copies(otl_proto_model *m, bool *nomem) {
    uint8_t *skeleton = NULL;
    size_t n = 0;
    const bool rewritten = otl_wire_skeleton(m->bytes, m->size, &skeleton, &n, nomem);
    if (*nomem) return NULL;
    m->proto = rewritten ? onnx__model_proto__unpack(NULL, n, skeleton) : onnx__model_proto__unpack(NULL, m->size, m->bytes);
    free(skeleton);
    if (m->proto && rewritten) attach_model(m);
    return m->proto;
}

onnxtl_status *otl_proto_parse_model(const void *data, size_t size, const char *name, otl_proto_model *out) {
    *out = (otl_proto_model){.bytes = data, .size = size, .allocator = {model_alloc, model_free, out}};
    if (!size) return otl_error(ONNXTL_ERR_FORMAT, "%s: file is empty", name);
    const char *text = describe_non_protobuf(data, size);
    if (text) return otl_error(ONNXTL_ERR_FORMAT, "%s: %s", name, text);
    if (!otl_wire_depth_within(data, size, &onnx__model_proto__descriptor, OTL_WIRE_MAX_DEPTH))
        return otl_error(ONNXTL_ERR_FORMAT, "%s: messages nest deeper than %d levels (a broken or hostile file)", name,
                         OTL_WIRE_MAX_DEPTH);
    bool nomem = false;
    if (!unpack_without_copies(out, &nomem))
        return nomem ? otl_nomem()
                     : otl_error(ONNXTL_ERR_FORMAT,
                                 "%s: not a valid ONNX model (protobuf parse failed: truncated or corrupt "
                                 "file, %zu bytes)", name, size);
    if (!out->proto->graph) {
        otl_proto_model_release(out);
        return otl_error(ONNXTL_ERR_FORMAT,
                         "%s: not an ONNX model (no graph in the protobuf; truncated or not a "
                         ".onnx file)", name);
    }
    return NULL;
}

onnxtl_status *otl_proto_read_model(const char *path, otl_proto_model *out) {
    otl_mapped_file file;
    OTL_TRY(otl_map_file(path, &file));
    onnxtl_status *st = otl_proto_parse_model(file.bytes, file.size, path, out);
    if (st) otl_unmap_file(&file);
    else out->file = file;
    return st;
}

void otl_proto_model_release(otl_proto_model *m) {
    if (m->proto) onnx__model_proto__free_unpacked(m->proto, &m->allocator);
    m->proto = NULL;
    if (m->file.bytes) otl_unmap_file(&m->file);
}

onnxtl_status *otl_proto_read_tensor(const char *path, Onnx__TensorProto **out) {
    otl_mapped_file file;
    OTL_TRY(otl_map_file(path, &file));
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, file.size, file.bytes);
    otl_unmap_file(&file);
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

/* Where an external tensor's bytes lie: in its file, mapped, which must
 * stay inside the model's folder and hold offset + length bytes. */
static onnxtl_status *external_bytes(const Onnx__TensorProto *t, size_t nbytes, otl_model_files *files,
                                     const uint8_t **out) {
    static const uint8_t none[1];
    const char *tname = t->name ? t->name : "", *location = NULL;
    uint64_t offset = 0, length = nbytes, end;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e->key || !e->value) continue;
        if (!strcmp(e->key, "location")) location = e->value;
        else if (!strcmp(e->key, "offset")) OTL_TRY(parse_u64(tname, "offset", e->value, &offset));
        else if (!strcmp(e->key, "length")) OTL_TRY(parse_u64(tname, "length", e->value, &length));
    }
    if (!location) return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data without a location", tname);
    if (length != nbytes)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data length %llu does not match its dims (%zu bytes)",
                         tname, (unsigned long long)length, nbytes);
    if (!files)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data ('%s') is not allowed here", tname, location);
    if (!nbytes) return *out = none, NULL; /* nothing to read, whatever the file */
    const otl_mapped_file *f;
    OTL_TRY(otl_model_files_external(files, tname, location, &f));
    if (__builtin_add_overflow(offset, length, &end) || end > f->size)
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data offset %llu + length %llu is past the end of '%s'",
                         tname, (unsigned long long)offset, (unsigned long long)length, location);
    *out = f->bytes + offset;
    return NULL;
}

static bool is_external(const Onnx__TensorProto *t) {
    return t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
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

/* The raw bytes the file stores for the tensor, nbytes of them, or NULL
 * when the typed field holds it. */
static onnxtl_status *stored_bytes_at(const Onnx__TensorProto *t, size_t nbytes, otl_model_files *files,
                                      const uint8_t **out) {
    *out = NULL;
    if (is_external(t)) return external_bytes(t, nbytes, files, out);
    if (!t->has_raw_data) return NULL;
    if (t->raw_data.len != nbytes)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': raw_data has %zu bytes but its dims need %zu",
                         t->name ? t->name : "", t->raw_data.len, nbytes);
    *out = t->raw_data.data;
    return NULL;
}

/* The bytes the file stores for the tensor: 4- and 2-bit types packed. */
static size_t stored_size(const otl_proto_tensor_info *info) {
    const int bits = otl_dtype_file_bits(info->dtype);
    return bits >= 8 ? info->nbytes : (info->nbytes * (size_t)bits + 7) / 8;
}

onnxtl_status *otl_proto_tensor_check_stored(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                             otl_model_files *files) {
    const size_t want = stored_size(info), esize = otl_dtype_size(info->dtype);
    const uint8_t *bytes;
    OTL_TRY(stored_bytes_at(t, want, files, &bytes));
    if (bytes || is_external(t) || t->has_raw_data) return NULL;
    const size_t count = otl_dtype_file_bits(info->dtype) >= 8 ? want / esize : want;
    const char *field;
    const size_t have = typed_count(t, info->dtype, &field);
    return !count || have == count ? NULL : count_mismatch(t, field, have, count);
}

onnxtl_status *otl_proto_tensor_stored_as_held(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                               otl_model_files *files, const void **out) {
    *out = NULL;
    if (otl_dtype_file_bits(info->dtype) < 8) return NULL;
    const uint8_t *bytes;
    OTL_TRY(stored_bytes_at(t, info->nbytes, files, &bytes));
    *out = bytes;
    return NULL;
}

/* 4- and 2-bit types are packed in the file (int32_data too holds one
 * packed byte per entry) and held one element per byte in memory. */
onnxtl_status *otl_proto_tensor_read(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                     otl_model_files *files, void *dst) {
    const bool packed = otl_dtype_file_bits(info->dtype) < 8;
    const size_t n = stored_size(info);
    const uint8_t *bytes;
    OTL_TRY(stored_bytes_at(t, n, files, &bytes));
    if (!packed) {
        if (bytes) memcpy(dst, bytes, n);
        return bytes ? NULL : read_typed(t, info, n, dst);
    }
    if (bytes) return otl_dtype_unpack(bytes, info->dtype, (int64_t)info->nbytes, dst), NULL;
    uint8_t *unpacked = malloc(n + 1);
    if (!unpacked) return otl_nomem();
    onnxtl_status *st = read_typed(t, info, n, unpacked);
    if (!st) otl_dtype_unpack(unpacked, info->dtype, (int64_t)info->nbytes, dst);
    free(unpacked);
    return st;
}
