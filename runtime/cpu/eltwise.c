/* Element-wise ops: activations, broadcasting arithmetic, BatchNorm, Cast. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dtype.h"

/* A bound from an optional scalar input of x's type, else the fallback. */
static double bound_or(const void *p, int dtype, double fallback) { return p ? otl_dtype_load(p, dtype, 0) : fallback; }

/* Bounds from inputs (opset 11+) or attributes; float32 directly, other
 * types through double, which holds each of them exactly. */
onnxtl_status *otl_cpu_clip(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t count = otl_tinfo_count(x);
    const bool inputs = a->n->opset >= 11;
    double lo = inputs ? bound_or(a->n->n_in > 1 ? a->in[1] : NULL, x->dtype, -INFINITY) : a->n->attrs.clip_min;
    double hi = inputs ? bound_or(a->n->n_in > 2 ? a->in[2] : NULL, x->dtype, INFINITY) : a->n->attrs.clip_max;
    if (x->dtype != ONNXTL_FLOAT) {
        for (int64_t i = 0; i < count; i++)
            otl_dtype_store(a->out[0], x->dtype, i, fmin(fmax(otl_dtype_load(a->in[0], x->dtype, i), lo), hi));
        return NULL;
    }
    const float *X = a->in[0], flo = (float)lo, fhi = (float)hi;
    float *Y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) Y[i] = fminf(fmaxf(X[i], flo), fhi);
    return NULL;
}

/* Each value over (bias + alpha / size * the sum of squares of a window of
 * size channels around it) ^ beta; the window has floor((size - 1) / 2)
 * channels before the value's and the rest after, as ONNX defines it. */
onnxtl_status *otl_cpu_lrn(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const otl_attrs *at = &a->n->attrs;
    const int64_t n = x->dims[0], c = x->dims[1], before = (at->lrn_size - 1) / 2, after = at->lrn_size - 1 - before;
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const float *X = a->in[0];
    float *Y = a->out[0];
    const double scale = (double)at->alpha / (double)at->lrn_size;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < n; b++) {
        for (int64_t ch = 0; ch < c; ch++) {
            const int64_t lo = ch - before < 0 ? 0 : ch - before, hi = ch + after >= c ? c - 1 : ch + after;
            for (int64_t p = 0; p < plane; p++) {
                double squares = 0;
                for (int64_t i = lo; i <= hi; i++) {
                    const double v = X[(b * c + i) * plane + p];
                    squares += v * v;
                }
                const int64_t at_v = (b * c + ch) * plane + p;
                Y[at_v] = (float)(X[at_v] / pow(at->bias + scale * squares, at->beta));
            }
        }
    }
    return NULL;
}

/* y = (x - mean) / sqrt(var + epsilon) * scale + shift per channel. */
static onnxtl_status *batchnorm_apply(const otl_kernel_args *a, const float *mean, const float *var) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t n = x->dims[0], c = x->dims[1];
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const float *X = a->in[0], *scale = a->in[1], *shift = a->in[2];
    float *Y = a->out[0];
    const double eps = a->n->attrs.epsilon;
    if (a->nhwc) { /* channels vary fastest: per-channel factors are computed once */
        float *k = malloc(sizeof(float) * 2 * (size_t)c + 1);
        if (!k) return otl_nomem();
        for (int64_t ch = 0; ch < c; ch++) {
            k[ch] = (float)(scale[ch] / sqrt((double)var[ch] + eps));
            k[c + ch] = shift[ch] - mean[ch] * k[ch];
        }
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n * plane; i++)
            for (int64_t ch = 0; ch < c; ch++) Y[i * c + ch] = X[i * c + ch] * k[ch] + k[c + ch];
        free(k);
        return NULL;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < n; b++) {
        for (int64_t ch = 0; ch < c; ch++) {
            float k = (float)(scale[ch] / sqrt((double)var[ch] + eps));
            float off = shift[ch] - mean[ch] * k;
            const float *src = X + (b * c + ch) * plane;
            float *dst = Y + (b * c + ch) * plane;
            for (int64_t i = 0; i < plane; i++) dst[i] = src[i] * k + off;
        }
    }
    return NULL;
}

/* Training mode: each channel's mean and population variance over the batch
 * (in double), stats[0..c) and stats[c..2c). */
static void batch_stats(const otl_kernel_args *a, float *stats) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t n = x->dims[0], c = x->dims[1];
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const float *X = a->in[0];
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0, squares = 0;
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < plane; i++) {
                double v = a->nhwc ? X[(b * plane + i) * c + ch] : X[(b * c + ch) * plane + i];
                sum += v, squares += v * v;
            }
        double count = (double)(n * plane), mean = sum / count;
        stats[ch] = (float)mean;
        stats[c + ch] = (float)(squares / count - mean * mean);
    }
}

/* The running statistics outputs: momentum * input + (1 - momentum) * batch. */
static void running_stats(const otl_kernel_args *a, const float *stats) {
    const int64_t c = IN_T(a, 0)->dims[1];
    const double m = a->n->attrs.momentum;
    for (int k = 1; k <= 2 && k < a->n->n_out; k++) {
        const float *prior = a->in[2 + k];
        float *out = a->out[k];
        for (int64_t ch = 0; out && ch < c; ch++) out[ch] = (float)(m * prior[ch] + (1 - m) * stats[(k - 1) * c + ch]);
    }
}

onnxtl_status *otl_cpu_batchnorm(const otl_kernel_args *a) {
    if (!a->n->attrs.training_mode) return batchnorm_apply(a, a->in[3], a->in[4]);
    const int64_t c = IN_T(a, 0)->dims[1];
    float *stats = malloc(sizeof(float) * 2 * (size_t)c + 1);
    if (!stats) return otl_nomem();
    batch_stats(a, stats);
    running_stats(a, stats);
    onnxtl_status *st = batchnorm_apply(a, stats, stats + c);
    free(stats);
    return st;
}

void otl_broadcast_strides(const otl_tinfo *in, const otl_tinfo *out, int64_t *strides) {
    int64_t s = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int j = i - (out->rank - in->rank);
        int64_t d = j >= 0 ? in->dims[j] : 1;
        strides[i] = d == 1 ? 0 : s;
        s *= d;
    }
}

#define BINARY_KERNELS(T, SUFFIX)                                                              \
    static T apply_##SUFFIX(otl_op op, T x, T y) {                                             \
        switch (op) {                                                                          \
        case OP_SUB: return (T)(x - y);                                                        \
        case OP_MUL: return (T)(x * y);                                                        \
        case OP_DIV: return y == 0 && !otl_is_float_##SUFFIX ? (T)0 : (T)(x / y);              \
        default: return (T)(x + y);                                                            \
        }                                                                                      \
    }                                                                                          \
    static void binary_##SUFFIX(otl_op op, const T *x, const int64_t *sx, const T *y,          \
                                const int64_t *sy, T *z, const otl_tinfo *out) {               \
        const int r = out->rank;                                                               \
        const int64_t inner = r ? out->dims[r - 1] : 1, count = otl_tinfo_count(out);          \
        const int64_t ix = r ? sx[r - 1] : 0, iy = r ? sy[r - 1] : 0;                           \
        int64_t idx[ONNXTL_MAX_RANK] = {0}, ox = 0, oy = 0;                                    \
        for (int64_t base = 0; base < count; base += inner) {                                  \
            for (int64_t i = 0; i < inner; i++) z[base + i] = apply_##SUFFIX(op, x[ox + i * ix], y[oy + i * iy]); \
            for (int d = r - 2; d >= 0; d--) {                                                 \
                ox += sx[d];                                                                   \
                oy += sy[d];                                                                   \
                if (++idx[d] < out->dims[d]) break;                                            \
                ox -= sx[d] * idx[d];                                                          \
                oy -= sy[d] * idx[d];                                                          \
                idx[d] = 0;                                                                    \
            }                                                                                  \
        }                                                                                      \
    }

enum { otl_is_float_f64 = 1, otl_is_float_i8 = 0, otl_is_float_u8 = 0,
       otl_is_float_i16 = 0, otl_is_float_u16 = 0, otl_is_float_i32 = 0, otl_is_float_u32 = 0,
       otl_is_float_i64 = 0, otl_is_float_u64 = 0 };

static inline float add_f(float x, float y) { return x + y; }
static inline float sub_f(float x, float y) { return x - y; }
static inline float mul_f(float x, float y) { return x * y; }
static inline float div_f(float x, float y) { return x / y; }
static inline float prelu_f(float x, float slope) { return x < 0.0f ? slope * x : x; }

/* One output row, z[i] = x[i * ix] op y[i * iy], with the loop chosen for
 * the strides (0 where an input repeats) so that it vectorises. */
#define SIMD_FOR _Pragma("omp simd") for (int64_t i = 0; i < n; i++)
#define ROW(f)                                                                   \
    do {                                                                         \
        if (ix == 1 && iy == 1) SIMD_FOR z[i] = f(x[i], y[i]);                   \
        else if (ix == 1 && iy == 0) SIMD_FOR z[i] = f(x[i], y[0]);              \
        else if (ix == 0 && iy == 1) SIMD_FOR z[i] = f(x[0], y[i]);              \
        else for (int64_t i = 0; i < n; i++) z[i] = f(x[i * ix], y[i * iy]);     \
    } while (0)

OTL_ISA_CLONES
static void row_f32(otl_op op, const float *x, int64_t ix, const float *y, int64_t iy, float *z, int64_t n) {
    switch (op) {
    case OP_SUB: ROW(sub_f); break;
    case OP_MUL: ROW(mul_f); break;
    case OP_DIV: ROW(div_f); break;
    case OP_PRELU: ROW(prelu_f); break;
    default: ROW(add_f); break;
    }
}

/* Float broadcasting, the rows of the output on all cores. */
static void binary_f32(otl_op op, const float *x, const int64_t *sx, const float *y, const int64_t *sy, float *z,
                       const otl_tinfo *out) {
    const int r = out->rank;
    const int64_t inner = r ? out->dims[r - 1] : 1, rows = inner ? otl_tinfo_count(out) / inner : 0;
    const int64_t ix = r ? sx[r - 1] : 0, iy = r ? sy[r - 1] : 0;
#pragma omp parallel for schedule(static) if (rows > 16)
    for (int64_t row = 0; row < rows; row++) {
        int64_t rest = row, ox = 0, oy = 0;
        for (int d = r - 2; d >= 0; d--) {
            const int64_t i = rest % out->dims[d];
            rest /= out->dims[d];
            ox += i * sx[d], oy += i * sy[d];
        }
        row_f32(op, x + ox, ix, y + oy, iy, z + row * inner, inner);
    }
}

BINARY_KERNELS(double, f64)
BINARY_KERNELS(int8_t, i8)
BINARY_KERNELS(uint8_t, u8)
BINARY_KERNELS(int16_t, i16)
BINARY_KERNELS(uint16_t, u16)
BINARY_KERNELS(int32_t, i32)
BINARY_KERNELS(uint32_t, u32)
BINARY_KERNELS(int64_t, i64)
BINARY_KERNELS(uint64_t, u64)

/* Same-shape float inputs, the common case in residual networks. */
static bool flat_float_add(const otl_kernel_args *a, otl_op op, const void *x, const void *y,
                           const otl_tinfo *tx, const otl_tinfo *ty, const otl_tinfo *to, void *z) {
    int64_t n = otl_tinfo_count(to);
    if (to->dtype != ONNXTL_FLOAT || otl_tinfo_count(tx) != n || otl_tinfo_count(ty) != n ||
        tx->rank != to->rank || ty->rank != to->rank || (op != OP_ADD && op != OP_SUM))
        return false;
    const float *fx = x, *fy = y;
    float *fz = z;
    if (a->n->attrs.fused_relu) {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float v = fx[i] + fy[i];
            fz[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) fz[i] = fx[i] + fy[i];
    }
    return true;
}

/* A channels-last step's view of t, aligned to 4-D, in memory order (N, H,
 * W, C).  The layout planner hands such a step only inputs stored
 * channels-last or whose two layouts are the same bytes. */
static otl_tinfo nhwc_view(const otl_tinfo *t) {
    int64_t d[4];
    otl_dims4(t, d);
    otl_tinfo v = *t;
    v.rank = 4;
    v.dims[0] = d[0], v.dims[1] = d[2], v.dims[2] = d[3], v.dims[3] = d[1];
    return v;
}

/* One broadcasting step; *relu_done tells whether a fused Relu was applied too. */
static onnxtl_status *binary_step(const otl_kernel_args *a, otl_op op, const void *x, const otl_tinfo *tx,
                                  const void *y, const otl_tinfo *ty, void *z, bool *relu_done) {
    otl_tinfo vx, vy, vo, out = *OUT_T(a, 0);
    if (a->nhwc) {
        vx = nhwc_view(tx), vy = nhwc_view(ty), vo = nhwc_view(&out);
        tx = &vx, ty = &vy, out = vo;
    }
    const otl_tinfo *to = &out;
    *relu_done = flat_float_add(a, op, x, y, tx, ty, to, z);
    if (*relu_done) return NULL;
    int64_t sx[ONNXTL_MAX_RANK], sy[ONNXTL_MAX_RANK];
    otl_broadcast_strides(tx, to, sx);
    otl_broadcast_strides(ty, to, sy);
    switch (to->dtype) {
    case ONNXTL_FLOAT: binary_f32(op, x, sx, y, sy, z, to); break;
    case ONNXTL_DOUBLE: binary_f64(op, x, sx, y, sy, z, to); break;
    case ONNXTL_INT8: binary_i8(op, x, sx, y, sy, z, to); break;
    case ONNXTL_UINT8: binary_u8(op, x, sx, y, sy, z, to); break;
    case ONNXTL_INT16: binary_i16(op, x, sx, y, sy, z, to); break;
    case ONNXTL_UINT16: binary_u16(op, x, sx, y, sy, z, to); break;
    case ONNXTL_INT32: binary_i32(op, x, sx, y, sy, z, to); break;
    case ONNXTL_UINT32: binary_u32(op, x, sx, y, sy, z, to); break;
    case ONNXTL_INT64: binary_i64(op, x, sx, y, sy, z, to); break;
    case ONNXTL_UINT64: binary_u64(op, x, sx, y, sy, z, to); break;
    default:
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s on %s", otl_op_name(op),
                         otl_dtype_name(to->dtype));
    }
    return NULL;
}

onnxtl_status *otl_cpu_binary(const otl_kernel_args *a) {
    const otl_node *n = a->n;
    const otl_tinfo *to = OUT_T(a, 0);
    if (n->n_in == 1) { /* Sum of one input */
        memcpy(a->out[0], a->in[0], otl_tinfo_bytes(to));
        return NULL;
    }
    otl_op op = n->op == OP_SUM ? OP_ADD : n->op;
    bool relu_done;
    OTL_TRY(binary_step(a, op, a->in[0], IN_T(a, 0), a->in[1], IN_T(a, 1), a->out[0], &relu_done));
    for (int k = 2; k < n->n_in; k++) /* Sum: accumulate the rest into the output */
        OTL_TRY(binary_step(a, op, a->out[0], to, a->in[k], IN_T(a, k), a->out[0], &relu_done));
    if (n->attrs.fused_relu && !relu_done) {
        float *z = a->out[0];
        for (int64_t i = 0, count = otl_tinfo_count(to); i < count; i++) z[i] = z[i] > 0.0f ? z[i] : 0.0f;
    }
    return NULL;
}

static bool is_integer(int dtype) { return !otl_dtype_is_float(dtype); }

onnxtl_status *otl_cpu_cast(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    const int64_t n = otl_tinfo_count(x);
    if (x->dtype == y->dtype) {
        memcpy(a->out[0], a->in[0], otl_tinfo_bytes(x));
        return NULL;
    }
    /* 64-bit integers do not fit a double exactly: convert them through integers. */
    if (is_integer(x->dtype) && is_integer(y->dtype) && y->dtype != ONNXTL_BOOL &&
        otl_dtype_size(y->dtype) == 8) {
        for (int64_t i = 0; i < n; i++) {
            int64_t v = x->dtype == ONNXTL_INT64 || x->dtype == ONNXTL_UINT64
                            ? ((const int64_t *)a->in[0])[i]
                            : (int64_t)otl_dtype_load(a->in[0], x->dtype, i);
            ((int64_t *)a->out[0])[i] = v;
        }
        return NULL;
    }
    const otl_cast_rules rules = {a->n->opset < 19 || a->n->attrs.saturate, (otl_round_mode)a->n->attrs.round_mode};
    for (int64_t i = 0; i < n; i++)
        otl_dtype_store_as(a->out[0], y->dtype, i, otl_dtype_load(a->in[0], x->dtype, i), rules);
    return NULL;
}

/* Each row over the axes from axis on: (x - mean) / sqrt(var + epsilon) *
 * Scale + B, mean and variance in double; Scale and B broadcast to a row. */
onnxtl_status *otl_cpu_layernorm(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    int64_t axis;
    OTL_TRY(otl_norm_axis(a->n->attrs.axis, x->rank, &axis));
    otl_tinfo row = {.dtype = x->dtype, .rank = x->rank - (int)axis};
    memcpy(row.dims, x->dims + axis, sizeof(int64_t) * (size_t)row.rank);
    const int64_t width = otl_tinfo_count(&row), rows = width ? otl_tinfo_count(x) / width : 0;
    const bool has_b = a->n->n_in > 2 && a->in[2];
    int64_t ss[ONNXTL_MAX_RANK], sb[ONNXTL_MAX_RANK];
    otl_broadcast_strides(IN_T(a, 1), &row, ss);
    if (has_b) otl_broadcast_strides(IN_T(a, 2), &row, sb);
    const float *X = a->in[0], *scale = a->in[1], *bias = has_b ? a->in[2] : NULL;
    float *Y = a->out[0];
    const double eps = a->n->attrs.epsilon;
    /* Scale and B of a whole row each (transformers' case) take the vectorised loop. */
    const bool dense = otl_tinfo_count(IN_T(a, 1)) == width && (!has_b || otl_tinfo_count(IN_T(a, 2)) == width);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = X + r * width;
        double sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < width; i++) sum += xr[i];
        const double mean = sum / (double)width;
#pragma omp simd reduction(+ : sq)
        for (int64_t i = 0; i < width; i++) sq += (xr[i] - mean) * (xr[i] - mean);
        const double inv = 1.0 / sqrt(sq / (double)width + eps);
        if (dense) {
            const float m = (float)mean, k = (float)inv;
            float *yr = Y + r * width;
#pragma omp simd
            for (int64_t i = 0; i < width; i++) yr[i] = (xr[i] - m) * k * scale[i] + (bias ? bias[i] : 0.0f);
            continue;
        }
        int64_t idx[ONNXTL_MAX_RANK] = {0}, os = 0, ob = 0;
        for (int64_t i = 0; i < width; i++) {
            Y[r * width + i] = (float)((xr[i] - mean) * inv * scale[os] + (bias ? bias[ob] : 0.0f));
            for (int d = row.rank - 1; d >= 0; d--) {
                os += ss[d], ob += has_b ? sb[d] : 0;
                if (++idx[d] < row.dims[d]) break;
                os -= ss[d] * idx[d], ob -= has_b ? sb[d] * idx[d] : 0;
                idx[d] = 0;
            }
        }
    }
    return NULL;
}

/* Per (image, channel): (x - mean) / sqrt(var + epsilon) * scale + B over
 * the spatial axes, mean and variance in double. */
onnxtl_status *otl_cpu_instancenorm(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t n = x->dims[0], c = x->dims[1], plane = c && n ? otl_tinfo_count(x) / (n * c) : 0;
    const float *X = a->in[0], *scale = a->in[1], *bias = a->in[2];
    float *Y = a->out[0];
    const double eps = a->n->attrs.epsilon;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n * c; r++) {
        const float *xr = X + r * plane;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < plane; i++) sum += xr[i];
        const double mean = plane ? sum / (double)plane : 0;
        for (int64_t i = 0; i < plane; i++) sq += (xr[i] - mean) * (xr[i] - mean);
        const double k = scale[r % c] / sqrt((plane ? sq / (double)plane : 0) + eps);
        for (int64_t i = 0; i < plane; i++) Y[r * plane + i] = (float)((xr[i] - mean) * k + bias[r % c]);
    }
    return NULL;
}

onnxtl_status *otl_cpu_imagescaler(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const otl_attrs *at = &a->n->attrs;
    const int64_t c = x->dims[1], plane = x->dims[2] * x->dims[3];
    const float *X = a->in[0];
    float *Y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < x->dims[0] * c; r++)
        for (int64_t i = 0; i < plane; i++)
            Y[r * plane + i] = at->alpha * X[r * plane + i] + (at->n_floats ? at->floats[r % c] : 0.0f);
    return NULL;
}

/* BatchNormalization with frozen statistics (torch's eval mode, the Keras
 * guide's advice for fine-tuning): y = (x - mean) k + shift, k = scale /
 * sqrt(var + eps), so dx = dy k, dscale = sum dy (x - mean) / sqrt(var + eps)
 * and dshift = sum dy, per channel. */
onnxtl_status *otl_cpu_batchnorm_backward(const otl_grad_args *a) {
    const otl_kernel_args *f = &a->f;
    const otl_tinfo *x = IN_T(f, 0);
    const int64_t n = x->dims[0], c = x->dims[1];
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const float *X = f->in[0], *scale = f->in[1], *mean = f->in[3], *var = f->in[4], *dY = a->dout[0];
    float *dX = a->din[0], *dscale = a->din[1], *dshift = a->din[2];
    const double eps = f->n->attrs.epsilon;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        const double inv = 1.0 / sqrt((double)var[ch] + eps);
        const float k = (float)(scale[ch] * inv);
        double ds = 0, db = 0;
        for (int64_t b = 0; b < n; b++) {
            const float *xs = X + (b * c + ch) * plane, *dy = dY + (b * c + ch) * plane;
            float *dx = dX ? dX + (b * c + ch) * plane : NULL;
            for (int64_t i = 0; i < plane; i++) {
                ds += (double)dy[i] * ((double)xs[i] - mean[ch]) * inv;
                db += dy[i];
                if (dx) dx[i] += dy[i] * k;
            }
        }
        if (dscale) dscale[ch] += (float)ds;
        if (dshift) dshift[ch] += (float)db;
    }
    return NULL;
}

/* A channel's batch size and plane, NCHW. */
static void channel_extent(const otl_tinfo *x, int64_t *n, int64_t *c, int64_t *plane) {
    *n = x->dims[0], *c = x->dims[1], *plane = 1;
    for (int i = 2; i < x->rank; i++) *plane *= x->dims[i];
}

void otl_cpu_batchnorm_train_forward(const otl_kernel_args *a, float *running_mean, float *running_var, double *saved) {
    int64_t n, c, plane;
    channel_extent(IN_T(a, 0), &n, &c, &plane);
    const float *X = a->in[0], *scale = a->in[1], *shift = a->in[2];
    float *Y = a->out[0];
    const double eps = a->n->attrs.epsilon, keep = a->n->attrs.momentum, count = (double)(n * plane);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0, squares = 0;
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < plane; i++) sum += X[(b * c + ch) * plane + i];
        const double mean = sum / count;
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < plane; i++) {
                const double d = X[(b * c + ch) * plane + i] - mean;
                squares += d * d;
            }
        const double var = squares / count, invstd = 1.0 / sqrt(var + eps);
        saved[ch] = mean, saved[c + ch] = invstd; /* in double: rounding the mean would shift every x - mean */
        running_mean[ch] = (float)(keep * running_mean[ch] + (1 - keep) * mean);
        running_var[ch] = (float)(keep * running_var[ch] + (1 - keep) * squares / (count - 1));
        /* x - mean in double: a channel whose mean is large against its spread loses no bits */
        const double k = scale[ch] * invstd;
        for (int64_t b = 0; b < n; b++) {
            const float *src = X + (b * c + ch) * plane;
            float *dst = Y + (b * c + ch) * plane;
            for (int64_t i = 0; i < plane; i++) dst[i] = (float)((src[i] - mean) * k + shift[ch]);
        }
    }
}

onnxtl_status *otl_cpu_batchnorm_train_backward(const otl_grad_args *a, const double *saved) {
    const otl_kernel_args *f = &a->f;
    int64_t n, c, plane;
    channel_extent(IN_T(f, 0), &n, &c, &plane);
    const float *X = f->in[0], *scale = f->in[1], *dY = a->dout[0];
    float *dX = a->din[0], *dscale = a->din[1], *dshift = a->din[2];
    const double count = (double)(n * plane);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        const double mean = saved[ch], invstd = saved[c + ch];
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < plane; i++) {
                const int64_t at = (b * c + ch) * plane + i;
                sum_dy += dY[at];
                sum_dy_xhat += (double)dY[at] * ((X[at] - mean) * invstd);
            }
        if (dscale) dscale[ch] += (float)sum_dy_xhat;
        if (dshift) dshift[ch] += (float)sum_dy;
        if (!dX) continue;
        const double k = scale[ch] * invstd, mean_dy = sum_dy / count, mean_dy_xhat = sum_dy_xhat / count;
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < plane; i++) {
                const int64_t at = (b * c + ch) * plane + i;
                dX[at] += (float)(k * (dY[at] - mean_dy - (X[at] - mean) * invstd * mean_dy_xhat));
            }
    }
    return NULL;
}

/* Add: each input's gradient is dy summed over the dimensions it was
 * broadcast along. */
onnxtl_status *otl_cpu_add_backward(const otl_grad_args *a) {
    const otl_kernel_args *f = &a->f;
    const otl_tinfo *y = OUT_T(f, 0);
    const int64_t count = otl_tinfo_count(y);
    const float *dY = a->dout[0];
    for (int k = 0; k < f->n->n_in; k++) {
        float *dX = a->din[k];
        if (!dX) continue;
        if (otl_tinfo_count(IN_T(f, k)) == count) {
#pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < count; i++) dX[i] += dY[i];
            continue;
        }
        int64_t strides[ONNXTL_MAX_RANK], idx[ONNXTL_MAX_RANK] = {0}, off = 0;
        otl_broadcast_strides(IN_T(f, k), y, strides);
        for (int64_t i = 0; i < count; i++) {
            dX[off] += dY[i];
            otl_index_next(y->rank, y->dims, strides, idx, &off);
        }
    }
    return NULL;
}
