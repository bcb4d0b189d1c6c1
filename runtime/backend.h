/* The interface every backend implements: prepare a plan, run it, release. */
#ifndef OTL_BACKEND_H
#define OTL_BACKEND_H

#include <stdarg.h>
#include <stdbool.h>

#include "plan.h"
#include "ranges.h"

/* Where a backend's diagnostics go (ONNXTL_CUDA_LOG, a cache it cannot
 * write): the library never prints.  A NULL fn drops them. */
typedef struct {
    void (*fn)(void *ctx, const char *line);
    void *ctx;
} otl_log;

void otl_log_line(const otl_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void otl_log_vline(const otl_log *log, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Settings from the environment (device.h reads them once). */
typedef struct {
    bool cuda_log;       /* ONNXTL_CUDA_LOG is set: how convolutions run, graph capture */
    int cuda_log_level;  /* its value: 2 also lists every candidate engine */
    bool cudnn_legacy;   /* ONNXTL_CUDNN=legacy: only the legacy convolution API */
    char tuning_cache[4096]; /* the cuDNN tuning cache file, "" for none */
    bool log;                /* ONNXTL_LOG=1: which nodes leave the backend for the CPU */
    char fallback_ops[512];  /* ONNXTL_FALLBACK_OPS: ops that run on the CPU whatever the device */
} otl_backend_env;

typedef struct {
    int threads;      /* 0: all cores */
    int device_index; /* for GPU backends */
    onnxtl_precision precision;
    const otl_ranges *ranges; /* int8: calibrated activation ranges */
    otl_backend_env env;
    otl_log log;
} otl_backend_config;

typedef struct {
    const char *name;
    /* Whether the backend runs step i of plan (its op, attributes and shapes);
     * the session places the steps it does not run on the CPU. */
    bool (*supports)(const otl_plan *plan, int step);
    /* Allocates what running plan needs (arena, workspace, device copies). */
    onnxtl_status *(*prepare)(const otl_plan *plan, const otl_backend_config *cfg, void **state);
    /* inputs[i] is host data for plan->g->inputs[i]; outputs[i] receives
     * plan->outputs[i] in host memory. */
    onnxtl_status *(*run)(void *state, const void *const *inputs, void *const *outputs);
    void (*release)(void *state);
    /* Host memory that uploads fastest (pinned); NULL: plain malloc will do. */
    onnxtl_status *(*host_alloc)(const otl_backend_config *cfg, size_t bytes, void **out);
    void (*host_free)(void *p);
} otl_backend;

extern const otl_backend otl_backend_cpu;
#ifdef ONNXTL_CUDA
extern const otl_backend otl_backend_cuda;
#endif

/* Evaluates one node on the CPU from constant inputs (an otl_eval_fn for plan folding). */
onnxtl_status *otl_cpu_eval(void *ctx, const otl_node *n, const otl_tinfo *t, void *const *out);

#endif
