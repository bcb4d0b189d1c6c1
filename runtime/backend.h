/* The interface every backend implements: prepare a plan, run it, release. */
#ifndef OTL_BACKEND_H
#define OTL_BACKEND_H

#include "plan.h"

typedef struct {
    int threads;      /* 0: all cores */
    int device_index; /* for GPU backends */
    int precision;    /* onnxtl_precision */
} otl_backend_config;

typedef struct {
    const char *name;
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
