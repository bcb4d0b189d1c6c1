/* Reading ONNX protobuf messages from files and decoding TensorProto contents. */
#ifndef OTL_PROTO_H
#define OTL_PROTO_H

#include "model_files.h"
#include "onnx.pb-c.h"
#include "status.h"

/* A parsed model whose tensor payloads were not copied: raw_data points into
 * the bytes it was parsed from, which must outlive it.  Its allocator frees
 * the message or any part of it and leaves those bytes alone.  It is not to
 * be moved once parsed, since the allocator refers to it. */
typedef struct {
    Onnx__ModelProto *proto;
    ProtobufCAllocator allocator;
    const uint8_t *bytes;
    size_t size;
    otl_mapped_file file; /* otl_proto_read_model's mapping, released with the model */
} otl_proto_model;

/* Parses a model held in memory; name is for messages, which say what the
 * bytes look like instead when they are not a model (Git LFS pointer, text
 * proto, truncated). */
onnxtl_status *otl_proto_parse_model(const void *data, size_t size, const char *name, otl_proto_model *out);
/* Maps a whole .onnx file and parses it. */
onnxtl_status *otl_proto_read_model(const char *path, otl_proto_model *out);
void otl_proto_model_release(otl_proto_model *m);

/* Parses a serialized TensorProto file (ONNX test data). */
onnxtl_status *otl_proto_read_tensor(const char *path, Onnx__TensorProto **out);

typedef struct {
    int dtype;
    int rank;
    int64_t dims[ONNXTL_MAX_RANK];
    size_t nbytes;
} otl_proto_tensor_info;

/* Validates a TensorProto's type and dims; the byte size is overflow-checked. */
onnxtl_status *otl_proto_tensor_describe(const Onnx__TensorProto *t, otl_proto_tensor_info *info);

/* In the three calls below, files gives the model's folder and maps its
 * external-data files; NULL where a tensor may not have external data. */

/* Whether the file holds the bytes the tensor's dims need (raw_data, the
 * typed field, or an external file inside the model's folder), checked
 * before anything is allocated for them. */
onnxtl_status *otl_proto_tensor_check_stored(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                             otl_model_files *files);

/* Where the bytes are when the file stores the tensor as onnxtl holds it
 * (raw_data or external data, not packed): *out points at them, else NULL
 * (typed fields, 4- and 2-bit types).  After otl_proto_tensor_check_stored. */
onnxtl_status *otl_proto_tensor_stored_as_held(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                               otl_model_files *files, const void **out);

/* Copies a tensor's contents into dst (info->nbytes bytes), checking that the
 * stored byte count matches the dims. */
onnxtl_status *otl_proto_tensor_read(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                     otl_model_files *files, void *dst);

#endif
