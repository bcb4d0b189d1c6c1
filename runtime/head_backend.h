/* The interface a classifier head's training arithmetic implements: forward,
 * backward and the optimizer step.  src/pipeline/train.c keeps the loop, the
 * loss and shuffling on the host; each backend draws dropout's masks itself,
 * as dropout.h hashes them, so every backend trains on the same batches with
 * the same masks. */
#ifndef OTL_HEAD_BACKEND_H
#define OTL_HEAD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "checked.h"
#include "dropout.h"
#include "status.h"

#define OTL_HEAD_MAX_LAYERS 3

typedef struct {
    int n_layers;
    int dims[OTL_HEAD_MAX_LAYERS + 1]; /* in, hidden..., out */
    bool adam;                         /* else SGD */
    float lr, momentum, weight_decay;
    int cap;                           /* rows per call, at most */
    int threads, device_index;
    onnxtl_precision precision;
} otl_head_config;

typedef struct {
    const char *name;
    /* params: weights [out, in] and biases, laid out w0 b0 w1 b1 ...; the
     * backend reads them now and hands them back through read. */
    onnxtl_status *(*create)(const otl_head_config *c, float *params, void **state);
    /* logits (n x classes) of the n feature rows x; drop, unless NULL, is
     * the step's dropout after each hidden layer (site l: hidden layer l). */
    onnxtl_status *(*forward)(void *state, const float *x, int n, const otl_dropout *drop, float *logits);
    /* Gradients from dlogits (n x classes) of the last forward, then one optimizer step. */
    onnxtl_status *(*step)(void *state, const float *dlogits, int n);
    onnxtl_status *(*read)(void *state, float *params);
    void (*release)(void *state);
} otl_head_backend;

extern const otl_head_backend otl_head_cpu;
#ifdef ONNXTL_CUDA
extern const otl_head_backend otl_head_cuda;
#endif

/* Parameters in layer l of a head with these dims: weights and bias. */
static inline size_t otl_head_layer_params(const int *dims, int l) {
    return (size_t)dims[l + 1] * (size_t)dims[l] + (size_t)dims[l + 1];
}

/* Points w[l] and b[l] into a flat array laid out w0 b0 w1 b1 ... */
static inline void otl_head_layer_views(const int *dims, int n_layers, float *base, float **w, float **b) {
    size_t off = 0;
    for (int l = 0; l < n_layers; l++) {
        w[l] = base + off;
        b[l] = base + off + (size_t)dims[l + 1] * (size_t)dims[l];
        off += otl_head_layer_params(dims, l);
    }
}

/* A batch's activations: a[l] is layer l's input (a[0] the features), z[l]
 * its output before ReLU, mask[l] ReLU and dropout together as one scale per
 * value; dz and da are gradient scratch as wide as the widest layer. */
typedef struct {
    float *a[OTL_HEAD_MAX_LAYERS], *z[OTL_HEAD_MAX_LAYERS], *mask[OTL_HEAD_MAX_LAYERS], *dz, *da;
} otl_head_acts;

static inline size_t otl_head_widest(const otl_head_config *c) {
    size_t widest = 0;
    for (int l = 0; l <= c->n_layers; l++) widest = (size_t)c->dims[l] > widest ? (size_t)c->dims[l] : widest;
    return widest;
}

/* Floats for c->cap rows of activations; false on overflow. */
static inline bool otl_head_activation_floats(const otl_head_config *c, size_t *out) {
    size_t per_row = 2 * otl_head_widest(c);
    for (int l = 0; l < c->n_layers; l++) per_row += (size_t)c->dims[l] + 2 * (size_t)c->dims[l + 1];
    return otl_mul_size(per_row, (size_t)c->cap, out);
}

/* Carves the activations out of base (otl_head_activation_floats floats). */
static inline void otl_head_activation_views(const otl_head_config *c, float *base, otl_head_acts *v) {
    float *p = base;
    for (int l = 0; l < c->n_layers; l++) {
        v->a[l] = p, p += (size_t)c->dims[l] * c->cap;
        v->z[l] = p, p += (size_t)c->dims[l + 1] * c->cap;
        v->mask[l] = p, p += (size_t)c->dims[l + 1] * c->cap;
    }
    v->dz = p, p += otl_head_widest(c) * c->cap;
    v->da = p;
}

#endif
