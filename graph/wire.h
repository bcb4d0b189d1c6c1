/* The protobuf wire format, for the one thing protobuf-c cannot do: parse a
 * model without copying its tensor payloads. */
#ifndef OTL_WIRE_H
#define OTL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* The TensorProto field a skeleton puts where raw_data was: 16 bytes, the
 * payload's offset in the model's bytes and its length (little-endian
 * uint64s).  The highest field number protobuf allows, which ONNX never uses;
 * one found in a file is dropped. */
#define OTL_WIRE_PAYLOAD_FIELD 536870911u
#define OTL_WIRE_PAYLOAD_REF_BYTES 16

/* payloads of fewer bytes stay in the skeleton: a reference would not be shorter */
#define OTL_WIRE_MIN_PAYLOAD 64

/* Rewrites a serialized ModelProto with every TensorProto's raw_data of at
 * least OTL_WIRE_MIN_PAYLOAD bytes replaced by a reference to where it lies
 * in bytes, wherever ONNX nests tensors: initializers, sparse initializers,
 * attributes, subgraphs, functions.  Everything else is kept byte for byte.
 * *out is malloc'd.  False when out of memory (*nomem set), and for bytes the
 * caller must parse as they are: malformed wire data (for the protobuf parser
 * to report), nesting deeper than OTL_WIRE_MAX_DEPTH, a tensor with two raw_data
 * fields or a singular message field given twice (protobuf merges those). */
bool otl_wire_skeleton(const uint8_t *bytes, size_t size, uint8_t **out, size_t *out_size, bool *nomem);

/* protobuf-c's parser recurses once per nested message, so a file nesting
 * a hundred thousand deep (a few megabytes of If branches or sequence types)
 * would overflow the stack.  Following the schema's message fields (d, from
 * the generated code), whether nothing nests deeper than max_depth; also true
 * for malformed wire data, which the parser then reports. */
#define OTL_WIRE_MAX_DEPTH 100
bool otl_wire_depth_within(const uint8_t *bytes, size_t size, const ProtobufCMessageDescriptor *d, int max_depth);

#endif
