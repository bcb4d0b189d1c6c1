/* Head training on the GPU: cuBLAS for the Linear layers, small kernels for
 * ReLU, dropout and the optimizer.  Parameters, gradients and optimizer
 * state stay on the device, and dropout's masks are drawn there; per step
 * only the batch's features and logits cross the bus. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dtype.h"
#include "head_backend.h"
#include "kernels.h"
#include "onnxtl_base.h"

typedef struct {
    otl_head_config c;
    cudaStream_t stream;
    cublasHandle_t blas;
    size_t n_params;
    float *state; /* device: params, grads, m, v, one allocation */
    float *params, *grads, *m, *v;
    float *w[OTL_HEAD_MAX_LAYERS], *b[OTL_HEAD_MAX_LAYERS], *gw[OTL_HEAD_MAX_LAYERS], *gb[OTL_HEAD_MAX_LAYERS];
    float *acts; /* device: the activations, one allocation */
    otl_head_acts act;
    int64_t steps;
} cuda_head;

static void cuda_head_release(void *state) {
    cuda_head *h = state;
    if (!h) return;
    cudaFree(h->state);
    cudaFree(h->acts);
    if (h->blas) cublasDestroy(h->blas);
    if (h->stream) cudaStreamDestroy(h->stream);
    free(h);
}

static onnxtl_status *device_alloc(float **p, size_t floats, const char *what) {
    cudaError_t e = cudaMalloc((void **)p, floats * sizeof(float) + 1);
    if (e == cudaErrorMemoryAllocation)
        return otl_error(ONNXTL_ERR_NOMEM, "out of GPU memory for the head's %s (%.1f MiB); try a smaller --batch or head",
                         what, (double)floats * 4.0 / 1048576.0);
    CUDA_TRY(e);
    return NULL;
}

static onnxtl_status *alloc_state(cuda_head *h) {
    const otl_head_config *c = &h->c;
    for (int l = 0; l < c->n_layers; l++) h->n_params += otl_head_layer_params(c->dims, l);
    const size_t n = h->n_params;
    OTL_TRY(device_alloc(&h->state, 4 * n, "parameters and optimizer state"));
    h->params = h->state, h->grads = h->state + n, h->m = h->state + 2 * n, h->v = h->state + 3 * n;
    CUDA_TRY(cudaMemsetAsync(h->m, 0, 2 * n * sizeof(float), h->stream));
    otl_head_layer_views(c->dims, c->n_layers, h->params, h->w, h->b);
    otl_head_layer_views(c->dims, c->n_layers, h->grads, h->gw, h->gb);
    size_t floats;
    if (!otl_head_activation_floats(c, &floats)) return otl_error(ONNXTL_ERR_NOMEM, "the head's batch is too large");
    OTL_TRY(device_alloc(&h->acts, floats, "batch activations"));
    otl_head_activation_views(c, h->acts, &h->act);
    return NULL;
}

static onnxtl_status *init(cuda_head *h, float *params) {
    OTL_TRY(otl_cuda_use_device(h->c.device_index));
    CUDA_TRY(cudaStreamCreateWithFlags(&h->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(cublasCreate(&h->blas));
    CUBLAS_TRY(cublasSetStream(h->blas, h->stream));
    /* fp32: no TF32 anywhere, so the GPU trains as the CPU does. */
    CUBLAS_TRY(cublasSetMathMode(h->blas, h->c.precision == ONNXTL_PRECISION_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                                  : CUBLAS_PEDANTIC_MATH));
    OTL_TRY(alloc_state(h));
    CUDA_TRY(cudaMemcpyAsync(h->params, params, h->n_params * sizeof(float), cudaMemcpyHostToDevice, h->stream));
    CUDA_TRY(cudaStreamSynchronize(h->stream));
    return NULL;
}

static onnxtl_status *cuda_head_create(const otl_head_config *c, float *params, void **state) {
    cuda_head *h = calloc(1, sizeof *h);
    if (!h) return otl_nomem();
    h->c = *c;
    onnxtl_status *st = init(h, params);
    if (st) {
        cuda_head_release(h);
        return st;
    }
    *state = h;
    return NULL;
}

/* Row-major C[m, n] = A[m, k] B[k, n] with either transposed, as cuBLAS's
 * column-major C^T = B^T A^T. */
static onnxtl_status *gemm(cuda_head *h, bool ta, bool tb, int m, int n, int k, const float *a, int lda, const float *b,
                           int ldb, float *c, int ldc) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_TRY(cublasSgemm(h->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one, b, ldb, a,
                           lda, &zero, c, ldc));
    return NULL;
}

static onnxtl_status *cuda_head_forward(void *state, const float *x, int n, const otl_dropout *drop, float *logits) {
    cuda_head *h = state;
    const otl_head_config *c = &h->c;
    CUDA_TRY(cudaMemcpyAsync(h->act.a[0], x, sizeof(float) * (size_t)n * (size_t)c->dims[0], cudaMemcpyHostToDevice, h->stream));
    for (int l = 0; l < c->n_layers; l++) {
        const int in = c->dims[l], out = c->dims[l + 1];
        OTL_TRY(gemm(h, false, true, n, out, in, h->act.a[l], in, h->w[l], in, h->act.z[l], out));
        CUDA_TRY(otl_cuda_add_bias(h->act.z[l], h->b[l], NULL, ONNXTL_FLOAT, n, out, 0, h->stream));
        if (l + 1 == c->n_layers) break;
        const size_t count = (size_t)n * (size_t)out;
        const float ratio = drop ? drop->ratio : 0.0f;
        const uint64_t key = drop ? otl_dropout_key(drop->seed, drop->step, (uint64_t)l) : 0;
        CUDA_TRY(otl_cuda_relu_dropout(h->act.z[l], h->act.mask[l], h->act.a[l + 1], (int64_t)count, ratio, key, h->stream));
    }
    const size_t classes = (size_t)c->dims[c->n_layers];
    CUDA_TRY(cudaMemcpyAsync(logits, h->act.z[c->n_layers - 1], sizeof(float) * (size_t)n * classes, cudaMemcpyDeviceToHost,
                             h->stream));
    CUDA_TRY(cudaStreamSynchronize(h->stream));
    return NULL;
}

static onnxtl_status *backward(cuda_head *h, int n) {
    const otl_head_config *c = &h->c;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const int in = c->dims[l], out = c->dims[l + 1];
        OTL_TRY(gemm(h, true, false, out, in, n, h->act.dz, out, h->act.a[l], in, h->gw[l], in));
        CUDA_TRY(otl_cuda_column_sums(h->act.dz, h->gb[l], n, out, h->stream));
        if (l == 0) break; /* the features are frozen */
        OTL_TRY(gemm(h, false, false, n, in, out, h->act.dz, out, h->w[l], in, h->act.da, in));
        CUDA_TRY(otl_cuda_multiply(h->act.da, h->act.mask[l - 1], h->act.dz, (int64_t)n * in, h->stream));
    }
    return NULL;
}

static onnxtl_status *optimizer_step(cuda_head *h) {
    const otl_head_config *c = &h->c;
    const int64_t n = (int64_t)h->n_params;
    h->steps++;
    if (!c->adam) {
        CUDA_TRY(otl_cuda_sgd(h->params, h->grads, h->m, n, c->lr, c->momentum, c->weight_decay, h->steps == 1, h->stream));
        return NULL;
    }
    const double bc1 = 1.0 - pow(0.9, (double)h->steps), bc2 = 1.0 - pow(0.999, (double)h->steps);
    const otl_adam_step k = {.step_size = (float)(c->lr / bc1), .bias_correction2_sqrt = (float)sqrt(bc2),
                             .beta1 = 0.9f, .beta2 = 0.999f, .one_minus_beta1 = (float)(1.0 - 0.9),
                             .one_minus_beta2 = (float)(1.0 - 0.999), .eps = 1e-8f, .weight_decay = c->weight_decay};
    CUDA_TRY(otl_cuda_adam(h->params, h->grads, h->m, h->v, n, k, h->stream));
    return NULL;
}

static onnxtl_status *cuda_head_step(void *state, const float *dlogits, int n) {
    cuda_head *h = state;
    const size_t classes = (size_t)h->c.dims[h->c.n_layers];
    CUDA_TRY(cudaMemcpyAsync(h->act.dz, dlogits, sizeof(float) * (size_t)n * classes, cudaMemcpyHostToDevice, h->stream));
    OTL_TRY(backward(h, n));
    return optimizer_step(h);
}

static onnxtl_status *cuda_head_read(void *state, float *params) {
    cuda_head *h = state;
    CUDA_TRY(cudaMemcpyAsync(params, h->params, h->n_params * sizeof(float), cudaMemcpyDeviceToHost, h->stream));
    CUDA_TRY(cudaStreamSynchronize(h->stream));
    return NULL;
}

const otl_head_backend otl_head_cuda = {"cuda", cuda_head_create, cuda_head_forward, cuda_head_step, cuda_head_read,
                                        cuda_head_release};
