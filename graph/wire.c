#include "wire.h"

#include <stdlib.h>
#include <string.h>

/* The messages that can hold a tensor, and where ONNX nests them
 * (onnx.proto's field numbers).  A field not listed is copied untouched. */
typedef enum { M_OPAQUE, M_MODEL, M_GRAPH, M_NODE, M_ATTR, M_TENSOR, M_SPARSE, M_FUNCTION } message;

enum { TENSOR_RAW_DATA = 9 };

/* The nested fields that hold one message, not a list: protobuf merges a
 * repeated one into the last, and would drop the reference with the first. */
static bool singular(message parent, uint64_t field) {
    switch (parent) {
    case M_MODEL: return field == 7;
    case M_ATTR: return field == 5 || field == 6 || field == 22;
    case M_SPARSE: return field == 1 || field == 2;
    default: return false;
    }
}

static message nested(message parent, uint64_t field) {
    switch (parent) {
    case M_MODEL: return field == 7 ? M_GRAPH : field == 25 ? M_FUNCTION : M_OPAQUE;
    case M_GRAPH: return field == 1 ? M_NODE : field == 5 ? M_TENSOR : field == 15 ? M_SPARSE : M_OPAQUE;
    case M_NODE: return field == 5 ? M_ATTR : M_OPAQUE;
    case M_ATTR:
        return field == 5 || field == 10   ? M_TENSOR
               : field == 6 || field == 11 ? M_GRAPH
               : field == 22 || field == 23 ? M_SPARSE
                                            : M_OPAQUE;
    case M_FUNCTION: return field == 7 ? M_NODE : M_OPAQUE;
    case M_SPARSE: return field == 1 || field == 2 ? M_TENSOR : M_OPAQUE;
    default: return M_OPAQUE;
    }
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
    const uint8_t *base; /* the model's bytes, which payload offsets count from */
    bool nomem;
} skeleton;

static bool reserve(skeleton *s, size_t more) {
    if (more <= s->cap - s->n) return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap - s->n < more) {
        if (cap > SIZE_MAX / 2) return !(s->nomem = true);
        cap *= 2;
    }
    uint8_t *grown = realloc(s->p, cap);
    if (!grown) return !(s->nomem = true);
    s->p = grown, s->cap = cap;
    return true;
}

static bool put(skeleton *s, const void *bytes, size_t n) {
    if (!reserve(s, n)) return false;
    memcpy(s->p + s->n, bytes, n);
    s->n += n;
    return true;
}

static size_t encode_varint(uint64_t v, uint8_t out[10]) {
    size_t k = 0;
    do out[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    while (v >>= 7);
    return k;
}

static bool put_varint(skeleton *s, uint64_t v) {
    uint8_t b[10];
    return put(s, b, encode_varint(v, b));
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) { /* at most 10 bytes */
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

static bool put_payload_ref(skeleton *s, const uint8_t *payload, uint64_t len) {
    uint8_t ref[OTL_WIRE_PAYLOAD_REF_BYTES];
    uint64_t offset = (uint64_t)(payload - s->base);
    for (int i = 0; i < 8; i++) ref[i] = (uint8_t)(offset >> 8 * i), ref[8 + i] = (uint8_t)(len >> 8 * i);
    return put_varint(s, (uint64_t)OTL_WIRE_PAYLOAD_FIELD << 3 | 2) && put_varint(s, sizeof ref) &&
           put(s, ref, sizeof ref);
}

static bool rewrite(skeleton *s, message kind, const uint8_t *p, const uint8_t *end, int depth);

/* A nested message with its length prefix, which is known only once it is
 * written: room for the longest varint is kept, then closed up. */
static bool rewrite_nested(skeleton *s, message kind, const uint8_t *body, uint64_t len, int depth) {
    if (!reserve(s, 10)) return false;
    const size_t at = s->n;
    s->n += 10;
    if (!rewrite(s, kind, body, body + len, depth + 1)) return false;
    uint8_t prefix[10];
    const size_t written = s->n - at - 10, k = encode_varint(written, prefix);
    memmove(s->p + at + k, s->p + at + 10, written);
    memcpy(s->p + at, prefix, k);
    s->n = at + k + written;
    return true;
}

/* One field of a message, read as protobuf-c reads it. */
typedef struct {
    uint64_t tag;
    const uint8_t *start, *tag_end; /* the field, and where its value starts */
    const uint8_t *body;            /* for a length-delimited field: its bytes */
    uint64_t len;
} wire_field;

/* Reads the field at *p and moves past it; false on malformed wire data
 * or a group (protobuf-c has none either). */
static bool read_field(const uint8_t **p, const uint8_t *end, wire_field *f) {
    uint64_t value;
    f->start = *p;
    if (!get_varint(p, end, &f->tag)) return false;
    f->tag_end = *p;
    switch (f->tag & 7) {
    case 0: return get_varint(p, end, &value);
    case 1:
    case 5: {
        const size_t width = (f->tag & 7) == 1 ? 8 : 4;
        if ((size_t)(end - *p) < width) return false;
        *p += width;
        return true;
    }
    case 2:
        if (!get_varint(p, end, &f->len) || f->len > (uint64_t)(end - *p)) return false;
        f->body = *p;
        *p += f->len;
        return true;
    default: return false;
    }
}

/* False also for what the skeleton would get wrong (a tensor with two
 * raw_data fields, a repeated singular message): the caller parses such a
 * file the copying way. */
static bool rewrite(skeleton *s, message kind, const uint8_t *p, const uint8_t *end, int depth) {
    if (depth > OTL_WIRE_MAX_DEPTH) return false;
    uint32_t seen = 0; /* singular fields met so far, by field number (all below 32) */
    int payloads = 0;
    while (p < end) {
        wire_field f;
        if (!read_field(&p, end, &f) || f.tag > UINT32_MAX) return false;
        const uint64_t field = f.tag >> 3;
        if (kind == M_TENSOR && field == OTL_WIRE_PAYLOAD_FIELD) continue; /* only the skeleton writes it */
        if ((f.tag & 7) == 2) {
            if (kind == M_TENSOR && field == TENSOR_RAW_DATA) {
                if (++payloads > 1) return false;
                if (f.len >= OTL_WIRE_MIN_PAYLOAD) { /* a shorter one is kept: a reference would not be shorter */
                    if (!put_payload_ref(s, f.body, f.len)) return false;
                    continue;
                }
            }
            if (singular(kind, field)) {
                if (seen >> field & 1) return false;
                seen |= 1u << field;
            }
            const message child = nested(kind, field);
            if (child != M_OPAQUE) {
                if (!put(s, f.start, (size_t)(f.tag_end - f.start)) || !rewrite_nested(s, child, f.body, f.len, depth))
                    return false;
                continue;
            }
        }
        if (!put(s, f.start, (size_t)(p - f.start))) return false;
    }
    return true;
}

bool otl_wire_skeleton(const uint8_t *bytes, size_t size, uint8_t **out, size_t *out_size, bool *nomem) {
    skeleton s = {.base = bytes};
    const bool ok = rewrite(&s, M_MODEL, bytes, bytes + size, 0);
    *nomem = s.nomem;
    if (!ok) {
        free(s.p);
        return false;
    }
    *out = s.p, *out_size = s.n;
    return true;
}

/* depth counts the messages open around p..end, this one included. */
static bool within(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d, int depth, int max_depth) {
    if (depth > max_depth) return false;
    while (p < end) {
        wire_field f;
        if (!read_field(&p, end, &f)) return true; /* malformed: the parser's to report */
        if ((f.tag & 7) != 2 || f.tag >> 3 > UINT32_MAX) continue; /* a tag protobuf-c cannot read fails there */
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, (unsigned)(f.tag >> 3));
        if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE && !within(f.body, f.body + f.len, fd->descriptor, depth + 1, max_depth))
            return false;
    }
    return true;
}

bool otl_wire_depth_within(const uint8_t *bytes, size_t size, const ProtobufCMessageDescriptor *d, int max_depth) {
    return within(bytes, bytes + size, d, 1, max_depth);
}
