/* The base types of onnxtl: status codes and handles, element types, tensors
 * and precisions.  Every layer uses them, from graph/ up to the public API
 * (include/onnxtl.h), which includes this header.
 *
 * Calls that can fail return an onnxtl_status*: NULL means success, anything
 * else carries a code and a one-line message and must be released with
 * onnxtl_status_release().
 */
#ifndef ONNXTL_BASE_H
#define ONNXTL_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ONNXTL_OK = 0,
    ONNXTL_ERR_ARG,         /* bad argument from the caller */
    ONNXTL_ERR_IO,          /* a file could not be opened, read or written */
    ONNXTL_ERR_FORMAT,      /* a file is not what it claims to be */
    ONNXTL_ERR_MODEL,       /* the model is well-formed but invalid */
    ONNXTL_ERR_UNSUPPORTED, /* valid ONNX that onnxtl does not implement */
    ONNXTL_ERR_NOMEM,
    ONNXTL_ERR_RUNTIME,
} onnxtl_code;

typedef struct onnxtl_status onnxtl_status;
onnxtl_code onnxtl_status_code(const onnxtl_status *st);
const char *onnxtl_status_message(const onnxtl_status *st);
void onnxtl_status_release(onnxtl_status *st);

/* Element types use the ONNX TensorProto.DataType numbering. */
enum {
    ONNXTL_FLOAT = 1, ONNXTL_UINT8 = 2, ONNXTL_INT8 = 3, ONNXTL_UINT16 = 4,
    ONNXTL_INT16 = 5, ONNXTL_INT32 = 6, ONNXTL_INT64 = 7, ONNXTL_BOOL = 9,
    ONNXTL_FLOAT16 = 10, ONNXTL_DOUBLE = 11, ONNXTL_UINT32 = 12,
    ONNXTL_UINT64 = 13, ONNXTL_BFLOAT16 = 16,
};

#define ONNXTL_MAX_RANK 8

/* A dense row-major tensor passed in or out of a session. */
typedef struct {
    const char *name;
    int dtype;
    int rank;
    int64_t dims[ONNXTL_MAX_RANK];
    void *data;
} onnxtl_tensor;

/* Arithmetic on the CUDA backend; the CPU backend always computes in fp32. */
typedef enum {
    ONNXTL_PRECISION_FP32 = 0, /* true fp32: no tensor-core rounding */
    ONNXTL_PRECISION_TF32,
    ONNXTL_PRECISION_FP16,
    ONNXTL_PRECISION_BF16,
} onnxtl_precision;

#ifdef __cplusplus
}
#endif
#endif
