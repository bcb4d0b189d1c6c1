/* Reading ONNX protobuf messages from files and decoding TensorProto contents. */
#ifndef OTL_PROTO_H
#define OTL_PROTO_H

#include "onnx.pb-c.h"
#include "status.h"

/* Parses a whole .onnx file.  Errors name the file and say what it looks like
 * instead (Git LFS pointer, text proto, truncated). */
onnxtl_status *otl_proto_read_model(const char *path, Onnx__ModelProto **out);
/* Parses a model held in memory; name is for messages. */
onnxtl_status *otl_proto_parse_model(const void *data, size_t size, const char *name, Onnx__ModelProto **out);
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

/* Whether the file holds the bytes the tensor's dims need (raw_data, the
 * typed field, or an external file inside model_dir), checked before
 * anything is allocated for them. */
onnxtl_status *otl_proto_tensor_check_stored(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                             const char *model_dir);

/* Copies a tensor's contents into dst (info->nbytes bytes): raw_data, typed
 * fields, or external data relative to model_dir (NULL: none allowed).  Checks that the stored
 * byte count matches the dims. */
onnxtl_status *otl_proto_tensor_read(const Onnx__TensorProto *t, const otl_proto_tensor_info *info,
                                     const char *model_dir, void *dst);

#endif
