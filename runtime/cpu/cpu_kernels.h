/* The CPU kernels: what each sees, and one function per op or op family,
 * all on dense row-major buffers.  cpu.c's kernel table maps ops to them. */
#ifndef OTL_CPU_KERNELS_H
#define OTL_CPU_KERNELS_H

#include <math.h>

#include "backend.h"

/* What a kernel sees: the node, every value's shape, and its buffers. */
typedef struct {
    const otl_node *n;
    const otl_tinfo *t;
    const void *const *in; /* per node input, NULL for an omitted optional one */
    void *const *out;      /* per node output */
    float *workspace;      /* otl_cpu_workspace_floats(n, t) floats */
    bool nhwc;             /* 4-D activations are channels-last (dims still say NCHW) */
} otl_kernel_args;

#define IN_T(a, k) (&(a)->t[(a)->n->in[k]])
#define OUT_T(a, k) (&(a)->t[(a)->n->out[k]])

/* Advances idx, a row-major index over dims, by one, and off, the offset
 * it reaches through per-axis strides (0 along a broadcast axis), with it. */
static inline void otl_index_next(int rank, const int64_t *dims, const int64_t *stride, int64_t *idx, int64_t *off) {
    for (int d = rank - 1; d >= 0; d--) {
        *off += stride[d];
        if (++idx[d] < dims[d]) return;
        *off -= stride[d] * idx[d];
        idx[d] = 0;
    }
}

/* What a backward kernel sees: the forward's arguments (its inputs and the
 * outputs it wrote, all ONNX order), the gradient of each output, and where
 * to add the gradient of each input (NULL: not wanted). */
typedef struct {
    otl_kernel_args f;
    const float *const *dout;
    float *const *din;
} otl_grad_args;

/* The gradients of Conv (any groups, strides, padding, dilation), MaxPool,
 * Gemm (transA 0), Relu and those below, added into din; a->f.workspace holds
 * otl_cpu_backward_workspace_floats floats. */
onnxtl_status *otl_cpu_conv_backward(const otl_grad_args *a);
onnxtl_status *otl_cpu_maxpool_backward(const otl_grad_args *a);
onnxtl_status *otl_cpu_avgpool_backward(const otl_grad_args *a);
onnxtl_status *otl_cpu_gemm_backward(const otl_grad_args *a);
onnxtl_status *otl_cpu_relu_backward(const otl_grad_args *a);
/* BatchNormalization with its statistics frozen (scale and shift trained), Add
 * with broadcasting, GlobalAveragePool. */
onnxtl_status *otl_cpu_batchnorm_backward(const otl_grad_args *a);
onnxtl_status *otl_cpu_add_backward(const otl_grad_args *a);
/* BatchNormalization as torch's train mode computes it (ONNX-order buffers):
 * each channel normalised by its batch mean and population variance, saved
 * (mean, 1 / sqrt(var + epsilon)) in saved[0..c) and saved[c..2c); the
 * running statistics in[3] and in[4] (a->in's, written in place) move by
 * 1 - the node's momentum towards the batch mean and the unbiased
 * variance.  The backward pass takes the batch statistics' own gradient. */
void otl_cpu_batchnorm_train_forward(const otl_kernel_args *a, float *running_mean, float *running_var, double *saved);
onnxtl_status *otl_cpu_batchnorm_train_backward(const otl_grad_args *a, const double *saved);
onnxtl_status *otl_cpu_global_avgpool_backward(const otl_grad_args *a);
size_t otl_cpu_backward_workspace_floats(const otl_node *n, const otl_tinfo *t);
/* Runs n's forward kernel (the backend's kernel table). */
onnxtl_status *otl_cpu_run_kernel(const otl_kernel_args *a);

/* im2col scratch a Conv not on oneDNN needs; 0 for every other node. */
size_t otl_cpu_workspace_floats(const otl_node *n, const otl_tinfo *t);

onnxtl_status *otl_cpu_conv(const otl_kernel_args *a);
onnxtl_status *otl_cpu_conv_transpose(const otl_kernel_args *a);
/* ConvInteger and MatMulInteger, exact in int32 (integer.c). */
onnxtl_status *otl_cpu_conv_integer(const otl_kernel_args *a);
onnxtl_status *otl_cpu_matmul_integer(const otl_kernel_args *a);
onnxtl_status *otl_cpu_pool(const otl_kernel_args *a);
onnxtl_status *otl_cpu_global_pool(const otl_kernel_args *a);
onnxtl_status *otl_cpu_batchnorm(const otl_kernel_args *a);
onnxtl_status *otl_cpu_lrn(const otl_kernel_args *a);
onnxtl_status *otl_cpu_clip(const otl_kernel_args *a);
onnxtl_status *otl_cpu_binary(const otl_kernel_args *a);
onnxtl_status *otl_cpu_cast(const otl_kernel_args *a);
onnxtl_status *otl_cpu_gemm(const otl_kernel_args *a);
onnxtl_status *otl_cpu_matmul(const otl_kernel_args *a);
onnxtl_status *otl_cpu_softmax(const otl_kernel_args *a);
onnxtl_status *otl_cpu_reduce(const otl_kernel_args *a);
onnxtl_status *otl_cpu_copy(const otl_kernel_args *a);
onnxtl_status *otl_cpu_shape(const otl_kernel_args *a);
onnxtl_status *otl_cpu_gather(const otl_kernel_args *a);
onnxtl_status *otl_cpu_gather_elements(const otl_kernel_args *a);
onnxtl_status *otl_cpu_gather_nd(const otl_kernel_args *a);
onnxtl_status *otl_cpu_concat(const otl_kernel_args *a);
onnxtl_status *otl_cpu_transpose(const otl_kernel_args *a);
onnxtl_status *otl_cpu_pad(const otl_kernel_args *a);

/* A loop compiled for AVX-512, AVX2 and the baseline, the loader picking
 * what the CPU runs (an ifunc).  ThreadSanitizer cannot run ifunc resolvers,
 * which run before it starts: its build (OTL_NO_ISA_CLONES) keeps the baseline. */
#ifdef OTL_NO_ISA_CLONES
#define OTL_ISA_CLONES
#else
#define OTL_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

/* exp(x) as 2^n * 2^f, n = round(x log2 e) and |f| <= 1/2, 2^f from its
 * Taylor polynomial to degree 6 (relative error below 2e-7), with no call
 * and no branch, so that a loop over it vectorises. */
static inline float otl_exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* adding and removing 1.5 * 2^23 rounds to the nearest integer */
    const float t = x * 1.44269504088896341f, n = (t + 12582912.0f) - 12582912.0f, f = (t - n) * 0.693147180559945309f;
    const float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720))))));
    const union { int32_t i; float f; } scale = {((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* erf(x) by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7),
 * vectorisable like otl_exp_poly. */
static inline float otl_erf_poly(float x) {
    const float a = x < 0.0f ? -x : x, t = 1.0f / (1.0f + 0.3275911f * a);
    const float p = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float r = 1.0f - p * otl_exp_poly(-a * a);
    return x < 0.0f ? -r : r;
}

static inline float otl_swish(float x, float alpha) { return x / (1.0f + otl_exp_poly(-alpha * x)); }

static inline float otl_hardswish(float x) {
    const float h = x * (1.0f / 6.0f) + 0.5f;
    return x * (h < 0.0f ? 0.0f : h > 1.0f ? 1.0f : h);
}

static inline float otl_gelu(float x) { return 0.5f * x * (1.0f + otl_erf_poly(x * 0.70710678118654752f)); }

static inline float otl_gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* The activation a Conv or a Linear layer applies to its output (a fused
 * Relu, Swish, HardSwish, Clip or Gelu), or v unchanged. */
static inline float otl_fused_activation(const otl_attrs *a, float v) {
    switch (a->fused_act) {
    case FUSED_SWISH: return otl_swish(v, a->alpha);
    case FUSED_HARDSWISH: return otl_hardswish(v);
    case FUSED_CLIP: return v < a->clip_min ? a->clip_min : v > a->clip_max ? a->clip_max : v;
    case FUSED_GELU: return otl_gelu(v);
    case FUSED_GELU_TANH: return otl_gelu_tanh(v);
    default: return a->fused_relu && v < 0.0f ? 0.0f : v;
    }
}

/* t's dims right-aligned to [N, C, H, W], ones in front (rank 4 or less). */
static inline void otl_dims4(const otl_tinfo *t, int64_t *d) {
    d[0] = d[1] = d[2] = d[3] = 1;
    for (int i = 0; i < t->rank; i++) d[4 - t->rank + i] = t->dims[i];
}

/* Per-axis element strides of an input broadcast to the output's shape (0
 * along the axes where it repeats). */
void otl_broadcast_strides(const otl_tinfo *in, const otl_tinfo *out, int64_t *strides);

/* One function of one float per element (math.c). */
onnxtl_status *otl_cpu_relu(const otl_kernel_args *a);
onnxtl_status *otl_cpu_leakyrelu(const otl_kernel_args *a);
onnxtl_status *otl_cpu_sigmoid(const otl_kernel_args *a);
onnxtl_status *otl_cpu_swish(const otl_kernel_args *a);
onnxtl_status *otl_cpu_hardsigmoid(const otl_kernel_args *a);
onnxtl_status *otl_cpu_hardswish(const otl_kernel_args *a);
onnxtl_status *otl_cpu_tanh(const otl_kernel_args *a);
onnxtl_status *otl_cpu_erf(const otl_kernel_args *a);
onnxtl_status *otl_cpu_gelu(const otl_kernel_args *a);
onnxtl_status *otl_cpu_exp(const otl_kernel_args *a);
onnxtl_status *otl_cpu_log(const otl_kernel_args *a);
onnxtl_status *otl_cpu_sqrt(const otl_kernel_args *a);
onnxtl_status *otl_cpu_reciprocal(const otl_kernel_args *a);
onnxtl_status *otl_cpu_neg(const otl_kernel_args *a);
onnxtl_status *otl_cpu_abs(const otl_kernel_args *a);
onnxtl_status *otl_cpu_softplus(const otl_kernel_args *a);
onnxtl_status *otl_cpu_softsign(const otl_kernel_args *a);
onnxtl_status *otl_cpu_elu(const otl_kernel_args *a);
onnxtl_status *otl_cpu_selu(const otl_kernel_args *a);
onnxtl_status *otl_cpu_celu(const otl_kernel_args *a);
/* Broadcasting comparisons, logic, Where, Pow, Mod, Max, Min, Mean, of any
 * numeric or bool type, computed in double (math.c). */
onnxtl_status *otl_cpu_elementwise(const otl_kernel_args *a);
onnxtl_status *otl_cpu_einsum(const otl_kernel_args *a);
onnxtl_status *otl_cpu_scatternd(const otl_kernel_args *a);
onnxtl_status *otl_cpu_layernorm(const otl_kernel_args *a);
onnxtl_status *otl_cpu_instancenorm(const otl_kernel_args *a);
onnxtl_status *otl_cpu_imagescaler(const otl_kernel_args *a);
onnxtl_status *otl_cpu_split(const otl_kernel_args *a);
onnxtl_status *otl_cpu_tile(const otl_kernel_args *a);
onnxtl_status *otl_cpu_argmax(const otl_kernel_args *a);
onnxtl_status *otl_cpu_depth_to_space(const otl_kernel_args *a);
onnxtl_status *otl_cpu_resize(const otl_kernel_args *a);
onnxtl_status *otl_cpu_slice(const otl_kernel_args *a);
onnxtl_status *otl_cpu_expand(const otl_kernel_args *a);
onnxtl_status *otl_cpu_constant_of_shape(const otl_kernel_args *a);
onnxtl_status *otl_cpu_range(const otl_kernel_args *a);

/* Layout conversion of a 4-D float tensor given by its NCHW dims. */
void otl_nchw_to_nhwc(const float *src, float *dst, const int64_t *dims);
void otl_nhwc_to_nchw(const float *src, float *dst, const int64_t *dims);

/* Row-major C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, multi-threaded. */
onnxtl_status *otl_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc);

#endif
