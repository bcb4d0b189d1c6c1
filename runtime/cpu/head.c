/* Head training on the CPU: oneDNN's sgemm for the Linear layers, and
 * torch.optim's Adam and SGD updates (optim.c), in place on the caller's parameters. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "head_backend.h"
#include "optim.h"

typedef struct {
    otl_head_config c;
    float *params, *w[OTL_HEAD_MAX_LAYERS], *b[OTL_HEAD_MAX_LAYERS];
    float *gw[OTL_HEAD_MAX_LAYERS], *gb[OTL_HEAD_MAX_LAYERS];
    size_t n_params;
    otl_head_acts act;
    float *acts; /* one allocation behind the activations */
    float *grads, *m, *v;
    int64_t steps;
} cpu_head;

static onnxtl_status *alloc_activations(cpu_head *h) {
    size_t floats;
    if (!otl_head_activation_floats(&h->c, &floats) || !(h->acts = malloc(floats * sizeof(float) + 1)))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate batch activations");
    otl_head_activation_views(&h->c, h->acts, &h->act);
    return NULL;
}

static void cpu_head_release(void *state) {
    cpu_head *h = state;
    if (!h) return;
    free(h->acts);
    free(h->grads);
    free(h->m);
    free(h->v);
    free(h);
}

static onnxtl_status *cpu_head_create(const otl_head_config *c, float *params, void **state) {
    cpu_head *h = calloc(1, sizeof *h);
    if (!h) return otl_nomem();
    h->c = *c;
    h->params = params;
    for (int l = 0; l < c->n_layers; l++) h->n_params += otl_head_layer_params(c->dims, l);
    otl_head_layer_views(c->dims, c->n_layers, params, h->w, h->b);
    onnxtl_status *st = alloc_activations(h);
    if (!st) {
        h->grads = calloc(h->n_params, sizeof(float));
        h->m = calloc(h->n_params, sizeof(float));
        h->v = c->adam ? calloc(h->n_params, sizeof(float)) : NULL;
        if (!h->grads || !h->m || (c->adam && !h->v))
            st = otl_error(ONNXTL_ERR_NOMEM, "cannot allocate optimizer state for %zu parameters", h->n_params);
    }
    if (st) {
        cpu_head_release(h);
        return st;
    }
    otl_head_layer_views(c->dims, c->n_layers, h->grads, h->gw, h->gb);
    if (c->threads > 0) omp_set_num_threads(c->threads);
    *state = h;
    return NULL;
}

static onnxtl_status *linear_forward(const float *x, const float *w, const float *b, int n, int in, int out, float *y) {
    OTL_TRY(otl_sgemm(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++) y[(size_t)i * out + j] += b[j];
    return NULL;
}

/* z[l] -> a[l+1]: ReLU, then inverted dropout. */
static void relu_dropout_forward(cpu_head *h, int l, size_t count, const otl_dropout *drop) {
    const uint64_t key = drop ? otl_dropout_key(drop->seed, drop->step, (uint64_t)l) : 0;
    const float scale = drop ? otl_dropout_scale(drop->ratio) : 1.0f;
    for (size_t i = 0; i < count; i++) {
        const bool kept = !drop || otl_dropout_keeps(key, i, drop->ratio);
        h->act.mask[l][i] = h->act.z[l][i] > 0.0f && kept ? scale : 0.0f;
        h->act.a[l + 1][i] = h->act.z[l][i] * h->act.mask[l][i];
    }
}

static onnxtl_status *cpu_head_forward(void *state, const float *x, int n, const otl_dropout *drop, float *logits) {
    cpu_head *h = state;
    const otl_head_config *c = &h->c;
    memcpy(h->act.a[0], x, sizeof(float) * (size_t)n * (size_t)c->dims[0]);
    for (int l = 0; l < c->n_layers; l++) {
        OTL_TRY(linear_forward(h->act.a[l], h->w[l], h->b[l], n, c->dims[l], c->dims[l + 1], h->act.z[l]));
        if (l + 1 < c->n_layers) relu_dropout_forward(h, l, (size_t)n * (size_t)c->dims[l + 1], drop);
    }
    memcpy(logits, h->act.z[c->n_layers - 1], sizeof(float) * (size_t)n * (size_t)c->dims[c->n_layers]);
    return NULL;
}

static onnxtl_status *backward(cpu_head *h, int n) {
    const otl_head_config *c = &h->c;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const int in = c->dims[l], out = c->dims[l + 1];
        OTL_TRY(otl_sgemm(true, false, out, in, n, 1.0f, h->act.dz, out, h->act.a[l], in, 0.0f, h->gw[l], in));
        for (int j = 0; j < out; j++) {
            float s = 0;
            for (int i = 0; i < n; i++) s += h->act.dz[(size_t)i * out + j];
            h->gb[l][j] = s;
        }
        if (l == 0) break; /* the features are frozen */
        OTL_TRY(otl_sgemm(false, false, n, in, out, 1.0f, h->act.dz, out, h->w[l], in, 0.0f, h->act.da, in));
        for (size_t i = 0; i < (size_t)n * in; i++) h->act.dz[i] = h->act.da[i] * h->act.mask[l - 1][i];
    }
    return NULL;
}

static void optimizer_step(cpu_head *h) {
    const otl_head_config *c = &h->c;
    h->steps++;
    if (c->adam) otl_adam_update(c->lr, c->weight_decay, false, h->steps, h->params, h->grads, h->m, h->v, h->n_params);
    else otl_sgd_update(c->lr, c->momentum, c->weight_decay, h->steps == 1, h->params, h->grads, h->m, h->n_params);
}

static onnxtl_status *cpu_head_step(void *state, const float *dlogits, int n) {
    cpu_head *h = state;
    memcpy(h->act.dz, dlogits, sizeof(float) * (size_t)n * (size_t)h->c.dims[h->c.n_layers]);
    OTL_TRY(backward(h, n));
    optimizer_step(h);
    return NULL;
}

static onnxtl_status *cpu_head_read(void *state, float *params) {
    cpu_head *h = state;
    if (params != h->params) memcpy(params, h->params, h->n_params * sizeof(float));
    return NULL;
}

const otl_head_backend otl_head_cpu = {"cpu", cpu_head_create, cpu_head_forward, cpu_head_step, cpu_head_read,
                                       cpu_head_release};
