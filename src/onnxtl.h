/* onnxtl public C API.
 *
 * Calls that can fail return an onnxtl_status*: NULL means success, anything
 * else carries a code and a one-line message and must be released with
 * onnxtl_status_release().  Handles are opaque and each has a release call.
 */
#ifndef ONNXTL_H
#define ONNXTL_H

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

typedef struct onnxtl_model onnxtl_model;

/* Loads, validates and optimises (folding, BatchNorm into Conv) a model. */
onnxtl_status *onnxtl_model_load(const char *path, onnxtl_model **out);
void onnxtl_model_release(onnxtl_model *model);

size_t onnxtl_model_input_count(const onnxtl_model *model);
size_t onnxtl_model_output_count(const onnxtl_model *model);
/* Declared shape of an input or output; symbolic dimensions are -1. */
void onnxtl_model_input(const onnxtl_model *model, size_t i, onnxtl_tensor *desc);
void onnxtl_model_output(const onnxtl_model *model, size_t i, onnxtl_tensor *desc);

/* Arithmetic on the CUDA backend; the CPU backend always computes in fp32. */
typedef enum {
    ONNXTL_PRECISION_FP32 = 0, /* true fp32: no tensor-core rounding */
    ONNXTL_PRECISION_TF32,
    ONNXTL_PRECISION_FP16,
    ONNXTL_PRECISION_BF16,
} onnxtl_precision;

typedef struct {
    int threads;        /* 0: all cores */
    const char *device; /* NULL or "cpu", "cuda", "cuda:N" */
    onnxtl_precision precision;
    int precision_set; /* set by the caller, not defaulted */
} onnxtl_options;

typedef struct onnxtl_session onnxtl_session;

/* A session runs one model on one backend; it keeps a plan per input shape. */
onnxtl_status *onnxtl_session_create(const onnxtl_model *model, const onnxtl_options *opts,
                                     onnxtl_session **out);
/* Runs the model. Every model input must be given, by name.  outputs[i].name
 * selects an output; on return its shape, dtype and data are filled in, the
 * data owned by the session and valid until the next run or release. */
onnxtl_status *onnxtl_session_run(onnxtl_session *s, const onnxtl_tensor *inputs, size_t n_inputs,
                                  onnxtl_tensor *outputs, size_t n_outputs);
void onnxtl_session_release(onnxtl_session *s);
/* Host memory the session's device reads fastest: pinned on CUDA, where
 * inputs from it upload at full speed; plain memory on the CPU.  Free it
 * with onnxtl_session_free_host before releasing the session. */
onnxtl_status *onnxtl_session_alloc_host(onnxtl_session *s, size_t bytes, void **out);
void onnxtl_session_free_host(onnxtl_session *s, void *p);

#ifdef __cplusplus
}
#endif
#endif
