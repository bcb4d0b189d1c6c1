/* onnxtl public C API.
 *
 * Calls that can fail return an onnxtl_status* (onnxtl_base.h): NULL means
 * success.  Handles are opaque and each has a release call.
 */
#ifndef ONNXTL_H
#define ONNXTL_H

#include <stddef.h>
#include <stdint.h>

#include "onnxtl_base.h"

#define ONNXTL_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct onnxtl_model onnxtl_model;

/* Loads, validates and optimises (folding, BatchNorm into Conv) a model. */
ONNXTL_API onnxtl_status *onnxtl_model_load(const char *path, onnxtl_model **out);
/* The same from size bytes in memory, which may be freed once it returns;
 * name labels messages.  Such a model cannot use external data files. */
ONNXTL_API onnxtl_status *onnxtl_model_load_memory(const void *data, size_t size, const char *name, onnxtl_model **out);
ONNXTL_API void onnxtl_model_release(onnxtl_model *model);

ONNXTL_API size_t onnxtl_model_input_count(const onnxtl_model *model);
ONNXTL_API size_t onnxtl_model_output_count(const onnxtl_model *model);
/* Declared shape of an input or output; symbolic dimensions are -1. */
ONNXTL_API void onnxtl_model_input(const onnxtl_model *model, size_t i, onnxtl_tensor *desc);
ONNXTL_API void onnxtl_model_output(const onnxtl_model *model, size_t i, onnxtl_tensor *desc);

typedef struct {
    int threads;        /* 0: all cores */
    const char *device; /* NULL or "cpu", "cuda", "cuda:N" */
    onnxtl_precision precision;
    int precision_set; /* set by the caller, not defaulted */
    /* The backend's diagnostics (ONNXTL_CUDA_LOG=1, a cache it cannot write),
     * one line a call; NULL: none.  The library itself never prints. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* For ONNXTL_PRECISION_INT8: the activation ranges a calibration pass
     * recorded, as text, a "MIN<tab>MAX<tab>TENSOR" line per tensor (what
     * extract --calibrate stores, and the "onnxtl.int8_ranges" metadata of a
     * model fit-head wrote, which NULL takes).  Scales follow from them. */
    const char *calibration;
} onnxtl_options;

typedef struct onnxtl_session onnxtl_session;

/* A session runs one model on one backend; it keeps a plan per input shape. */
ONNXTL_API onnxtl_status *onnxtl_session_create(const onnxtl_model *model, const onnxtl_options *opts,
                                     onnxtl_session **out);
/* Runs the model. Every model input must be given, by name.  outputs[i].name
 * selects an output; on return its shape, dtype and data are filled in, the
 * data owned by the session and valid until the next run or release. */
ONNXTL_API onnxtl_status *onnxtl_session_run(onnxtl_session *s, const onnxtl_tensor *inputs, size_t n_inputs,
                                  onnxtl_tensor *outputs, size_t n_outputs);
ONNXTL_API void onnxtl_session_release(onnxtl_session *s);
/* Host memory the session's device reads fastest: pinned on CUDA, where
 * inputs from it upload at full speed; plain memory on the CPU.  Free it
 * with onnxtl_session_free_host before releasing the session. */
ONNXTL_API onnxtl_status *onnxtl_session_alloc_host(onnxtl_session *s, size_t bytes, void **out);
ONNXTL_API void onnxtl_session_free_host(onnxtl_session *s, void *p);

/* Classifying JPEG files: with a model fit-head wrote, whose metadata gives
 * the class names and the preprocessing, or with any image classifier
 * (preprocessing from what the model states; classes named "0", "1", ...). */
typedef struct onnxtl_classifier onnxtl_classifier;

/* opts may be NULL: the CPU, all cores. */
ONNXTL_API onnxtl_status *onnxtl_classifier_open(const char *model_path, const onnxtl_options *opts,
                                                 onnxtl_classifier **out);
ONNXTL_API size_t onnxtl_classifier_class_count(const onnxtl_classifier *c);
ONNXTL_API const char *onnxtl_classifier_class_name(const onnxtl_classifier *c, size_t i);
/* Decodes and preprocesses one JPEG, runs the model and writes class_count
 * values: the probabilities of a model from fit-head (it ends in a Softmax),
 * the model's own outputs otherwise.  An unreadable image is an error naming it. */
ONNXTL_API onnxtl_status *onnxtl_classifier_classify(onnxtl_classifier *c, const char *image_path,
                                                     float *probabilities);
ONNXTL_API void onnxtl_classifier_release(onnxtl_classifier *c);

#ifdef __cplusplus
}
#endif
#endif
