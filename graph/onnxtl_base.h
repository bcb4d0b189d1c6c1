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

/* What libonnxtl.so exports: the public API only, everything else is hidden. */
#define ONNXTL_API __attribute__((visibility("default")))

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
ONNXTL_API onnxtl_code onnxtl_status_code(const onnxtl_status *st);
ONNXTL_API const char *onnxtl_status_message(const onnxtl_status *st);
ONNXTL_API void onnxtl_status_release(onnxtl_status *st);

/* Element types use the ONNX TensorProto.DataType numbering. */
enum {
    ONNXTL_FLOAT = 1, ONNXTL_UINT8 = 2, ONNXTL_INT8 = 3, ONNXTL_UINT16 = 4,
    ONNXTL_INT16 = 5, ONNXTL_INT32 = 6, ONNXTL_INT64 = 7, ONNXTL_BOOL = 9,
    ONNXTL_FLOAT16 = 10, ONNXTL_DOUBLE = 11, ONNXTL_UINT32 = 12,
    ONNXTL_UINT64 = 13, ONNXTL_BFLOAT16 = 16,
    /* Narrow types, held one element per byte in memory (a 4-bit or 2-bit
     * integer as its value in an int8/uint8, a float as its bit pattern in
     * the low bits); only files store them packed. */
    ONNXTL_FLOAT8E4M3FN = 17, ONNXTL_FLOAT8E4M3FNUZ = 18, ONNXTL_FLOAT8E5M2 = 19,
    ONNXTL_FLOAT8E5M2FNUZ = 20, ONNXTL_UINT4 = 21, ONNXTL_INT4 = 22, ONNXTL_FLOAT4E2M1 = 23,
    ONNXTL_FLOAT8E8M0 = 24, ONNXTL_UINT2 = 25, ONNXTL_INT2 = 26,
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

/* The arithmetic of a network's convolutions and matrix products.  The CPU
 * runs fp32, bf16 (on AVX512_BF16 or AMX) and int8 (calibrated activation
 * scales, onnxtl_options.calibration); CUDA runs fp32, tf32, fp16 and bf16. */
typedef enum {
    ONNXTL_PRECISION_FP32 = 0, /* true fp32: no tensor-core rounding */
    ONNXTL_PRECISION_TF32,
    ONNXTL_PRECISION_FP16,
    ONNXTL_PRECISION_BF16,
    ONNXTL_PRECISION_INT8,
} onnxtl_precision;

#ifdef __cplusplus
}
#endif
#endif
