/* Element-wise math: one float function per element for the activations,
 * and a broadcasting kernel in double for comparisons, logic, Where, Pow,
 * Mod, Max, Min and Mean, which classifiers use on small tensors. */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dtype.h"

typedef void (*chunk_fn)(const float *x, float *y, int64_t n, const otl_attrs *a);

static onnxtl_status *map_chunks(const otl_kernel_args *a, chunk_fn f) {
    enum { CHUNK = 4096 };
    const int64_t count = otl_tinfo_count(IN_T(a, 0));
    const float *x = a->in[0];
    float *y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i += CHUNK) f(x + i, y + i, count - i < CHUNK ? count - i : CHUNK, &a->n->attrs);
    return NULL;
}

/* A chunk loop for each ISA (OTL_ISA_CLONES), which vectorises where the
 * expression has no libm call. */
#define MAP_CHUNK(NAME, EXPR)                                                                     \
    OTL_ISA_CLONES                                                                                \
    static void NAME##_chunk(const float *X, float *Y, int64_t n, const otl_attrs *at) {          \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                     \
            const float x = X[i];                                                                 \
            Y[i] = (EXPR);                                                                        \
        }                                                                                         \
    }

/* One kernel per function: its chunk loop, run on all cores. */
#define MAP_KERNEL(NAME, EXPR) \
    MAP_CHUNK(NAME, EXPR)      \
    onnxtl_status *otl_cpu_##NAME(const otl_kernel_args *a) { return map_chunks(a, NAME##_chunk); }

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

MAP_KERNEL(relu, x > 0.0f ? x : 0.0f)
MAP_KERNEL(leakyrelu, x >= 0.0f ? x : at->alpha * x)
MAP_KERNEL(sigmoid, 1.0f / (1.0f + otl_exp_poly(-x)))
MAP_KERNEL(swish, otl_swish(x, at->alpha))
MAP_KERNEL(hardsigmoid, clamp01(at->alpha * x + at->beta))
MAP_KERNEL(hardswish, otl_hardswish(x))
MAP_KERNEL(tanh, tanhf(x))
MAP_KERNEL(erf, otl_erf_poly(x))
MAP_CHUNK(gelu_erf, otl_gelu(x))
MAP_CHUNK(gelu_tanh, otl_gelu_tanh(x))

onnxtl_status *otl_cpu_gelu(const otl_kernel_args *a) {
    return map_chunks(a, a->n->attrs.gelu_tanh ? gelu_tanh_chunk : gelu_erf_chunk);
}

MAP_KERNEL(exp, expf(x))
MAP_KERNEL(log, logf(x))
MAP_KERNEL(sqrt, sqrtf(x))
MAP_KERNEL(reciprocal, 1.0f / x)
MAP_KERNEL(neg, -x)
MAP_KERNEL(abs, fabsf(x))
MAP_KERNEL(softplus, x > 20.0f ? x : log1pf(expf(x)))
MAP_KERNEL(softsign, x / (1.0f + fabsf(x)))
MAP_KERNEL(elu, x >= 0.0f ? x : at->alpha * expm1f(x))
MAP_KERNEL(selu, at->gamma * (x > 0.0f ? x : at->alpha * expm1f(x)))
MAP_KERNEL(celu, fmaxf(0.0f, x) + fminf(0.0f, at->alpha * expm1f(x / at->alpha)))

/* Mod with the sign of the divisor (fmod = 0) or of the dividend (fmod = 1). */
static double mod(double x, double y, bool c_fmod, bool is_float) {
    if (y == 0) return is_float ? NAN : 0;
    double r = fmod(x, y);
    return !c_fmod && r != 0 && (r < 0) != (y < 0) ? r + y : r;
}

static double apply(const otl_node *n, const double *v, int dtype) {
    switch (n->op) {
    case OP_EQUAL: return v[0] == v[1];
    case OP_LESS: return v[0] < v[1];
    case OP_LESSOREQUAL: return v[0] <= v[1];
    case OP_GREATER: return v[0] > v[1];
    case OP_GREATEROREQUAL: return v[0] >= v[1];
    case OP_AND: return v[0] != 0 && v[1] != 0;
    case OP_OR: return v[0] != 0 || v[1] != 0;
    case OP_XOR: return (v[0] != 0) != (v[1] != 0);
    case OP_NOT: return v[0] == 0;
    case OP_WHERE: return v[0] != 0 ? v[1] : v[2];
    case OP_POW: return pow(v[0], v[1]);
    case OP_MOD: return mod(v[0], v[1], n->attrs.fmod, otl_dtype_is_float(dtype));
    default: break;
    }
    double r = v[0]; /* Max, Min, Mean over n_in values */
    for (int k = 1; k < n->n_in; k++) r = n->op == OP_MAX ? fmax(r, v[k]) : n->op == OP_MIN ? fmin(r, v[k]) : r + v[k];
    return n->op == OP_MEAN ? r / n->n_in : r;
}

#define MAX_ELEMENTWISE_IN 16

onnxtl_status *otl_cpu_elementwise(const otl_kernel_args *a) {
    const otl_node *n = a->n;
    const otl_tinfo *out = OUT_T(a, 0);
    if (n->n_in > MAX_ELEMENTWISE_IN)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s of more than %d inputs", otl_op_name(n->op), MAX_ELEMENTWISE_IN);
    int64_t strides[MAX_ELEMENTWISE_IN][ONNXTL_MAX_RANK], offset[MAX_ELEMENTWISE_IN] = {0}, idx[ONNXTL_MAX_RANK] = {0};
    for (int k = 0; k < n->n_in; k++) otl_broadcast_strides(IN_T(a, k), out, strides[k]);
    const int64_t count = otl_tinfo_count(out);
    for (int64_t i = 0; i < count; i++) {
        double v[MAX_ELEMENTWISE_IN];
        for (int k = 0; k < n->n_in; k++) v[k] = otl_dtype_load(a->in[k], IN_T(a, k)->dtype, offset[k]);
        otl_dtype_store(a->out[0], out->dtype, i, apply(n, v, IN_T(a, 0)->dtype));
        for (int d = out->rank - 1; d >= 0; d--) { /* next index, row-major */
            for (int k = 0; k < n->n_in; k++) offset[k] += strides[k][d];
            if (++idx[d] < out->dims[d]) break;
            for (int k = 0; k < n->n_in; k++) offset[k] -= strides[k][d] * idx[d];
            idx[d] = 0;
        }
    }
    return NULL;
}

/* Every output element sums, over the letters it does not name, the product
 * of its inputs' elements: a plain loop over all letters, which is enough for
 * the batched products exporters emit Einsum for. */
onnxtl_status *otl_cpu_einsum(const otl_kernel_args *a) {
    otl_einsum e;
    OTL_TRY(otl_einsum_parse(a->n, a->t, &e));
    int letters[52], n_letters = 0;
    bool in_out[52] = {0};
    for (int i = 0; i < e.out_rank; i++) in_out[e.out[i]] = true;
    for (int l = 0; l < 52; l++) /* the output's letters outermost, in its order, then the summed ones */
        if (e.extent[l] >= 0 && !in_out[l]) letters[e.out_rank + n_letters++] = l;
    for (int i = 0; i < e.out_rank; i++) letters[i] = e.out[i];
    const int total = e.out_rank + n_letters;
    int64_t stride[OTL_EINSUM_MAX_IN][52] = {{0}}; /* per input, per letter: its element stride (0 if absent or 1) */
    for (int k = 0; k < e.n_in; k++) {
        const otl_tinfo *x = IN_T(a, k);
        int64_t s = 1;
        for (int i = e.rank[k] - 1; i >= 0; i--) {
            stride[k][e.axes[k][i]] = x->dims[i] == 1 ? 0 : s;
            s *= x->dims[i];
        }
    }
    int64_t inner = 1, count = otl_tinfo_count(OUT_T(a, 0));
    for (int j = e.out_rank; j < total; j++) inner *= e.extent[letters[j]];
    float *y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < count; o++) {
        int64_t base[OTL_EINSUM_MAX_IN] = {0}, rest = o;
        for (int j = e.out_rank - 1; j >= 0; j--) {
            const int64_t v = rest % e.extent[letters[j]];
            rest /= e.extent[letters[j]];
            for (int k = 0; k < e.n_in; k++) base[k] += v * stride[k][letters[j]];
        }
        double sum = 0;
        for (int64_t r = 0; r < inner; r++) {
            int64_t off[OTL_EINSUM_MAX_IN], left = r;
            for (int k = 0; k < e.n_in; k++) off[k] = base[k];
            for (int j = total - 1; j >= e.out_rank; j--) {
                const int64_t v = left % e.extent[letters[j]];
                left /= e.extent[letters[j]];
                for (int k = 0; k < e.n_in; k++) off[k] += v * stride[k][letters[j]];
            }
            double prod = 1;
            for (int k = 0; k < e.n_in; k++) prod *= ((const float *)a->in[k])[off[k]];
            sum += prod;
        }
        y[o] = (float)sum;
    }
    return NULL;
}

static double reduce_into(int reduction, double old, double update) {
    switch (reduction) {
    case 1: return old + update;
    case 2: return old * update;
    case 3: return fmax(old, update);
    case 4: return fmin(old, update);
    default: return update;
    }
}

/* A copy of data with the slices that indices name replaced by (or reduced
 * with) updates; an index out of range is an error, not a write. */
onnxtl_status *otl_cpu_scatternd(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *idx = IN_T(a, 1);
    const int64_t k = idx->dims[idx->rank - 1], n = otl_tinfo_count(idx) / (k ? k : 1);
    int64_t slice = 1;
    for (int i = (int)k; i < x->rank; i++) slice *= x->dims[i];
    memcpy(a->out[0], a->in[0], otl_tinfo_bytes(x));
    const int64_t *ind = a->in[1];
    for (int64_t u = 0; u < n; u++) {
        int64_t off = 0;
        for (int i = 0; i < k; i++) {
            int64_t v = ind[u * k + i];
            if (v < 0) v += x->dims[i];
            if (v < 0 || v >= x->dims[i])
                return otl_error(ONNXTL_ERR_ARG, "ScatterND index %lld is out of range for axis size %lld",
                                 (long long)ind[u * k + i], (long long)x->dims[i]);
            off = off * x->dims[i] + v;
        }
        for (int64_t j = 0; j < slice; j++) {
            const double old = otl_dtype_load(a->out[0], x->dtype, off * slice + j);
            const double update = otl_dtype_load(a->in[2], x->dtype, u * slice + j);
            otl_dtype_store(a->out[0], x->dtype, off * slice + j, reduce_into(a->n->attrs.reduction, old, update));
        }
    }
    return NULL;
}

/* Relu passes the gradient where its output is positive (torch's threshold_backward). */
onnxtl_status *otl_cpu_relu_backward(const otl_grad_args *a) {
    if (!a->din[0]) return NULL;
    const int64_t count = otl_tinfo_count(OUT_T(&a->f, 0));
    const float *y = a->f.out[0], *dy = a->dout[0];
    float *dx = a->din[0];
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
    return NULL;
}
