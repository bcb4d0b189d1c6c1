/* Element-wise ops: activations, broadcasting arithmetic, BatchNorm, Cast. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dtype.h"

static float scalar_or(const void *p, float fallback) { return p ? *(const float *)p : fallback; }

onnxtl_status *otl_cpu_relu(const otl_kernel_args *a) {
    const int64_t count = otl_tinfo_count(IN_T(a, 0));
    const float *x = a->in[0];
    float *y = a->out[0];
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    return NULL;
}

onnxtl_status *otl_cpu_leakyrelu(const otl_kernel_args *a) {
    const int64_t count = otl_tinfo_count(IN_T(a, 0));
    const float *x = a->in[0], alpha = a->n->attrs.alpha;
    float *y = a->out[0];
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = x[i] >= 0.0f ? x[i] : alpha * x[i];
    return NULL;
}

onnxtl_status *otl_cpu_sigmoid(const otl_kernel_args *a) {
    const int64_t count = otl_tinfo_count(IN_T(a, 0));
    const float *x = a->in[0];
    float *y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
    return NULL;
}

/* Bounds from inputs (opset 11+) or attributes. */
onnxtl_status *otl_cpu_clip(const otl_kernel_args *a) {
    const int64_t count = otl_tinfo_count(IN_T(a, 0));
    const float *x = a->in[0];
    float *y = a->out[0];
    const bool inputs = a->n->opset >= 11;
    float lo = inputs ? scalar_or(a->n->n_in > 1 ? a->in[1] : NULL, -INFINITY) : a->n->attrs.clip_min;
    float hi = inputs ? scalar_or(a->n->n_in > 2 ? a->in[2] : NULL, INFINITY) : a->n->attrs.clip_max;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = fminf(fmaxf(x[i], lo), hi);
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

onnxtl_status *otl_cpu_batchnorm(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t n = x->dims[0], c = x->dims[1];
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const float *X = a->in[0], *scale = a->in[1], *shift = a->in[2], *mean = a->in[3], *var = a->in[4];
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

/* Per-axis strides of an input broadcast to the output shape (0 where it repeats). */
static void broadcast_strides(const otl_tinfo *in, const otl_tinfo *out, int64_t *strides) {
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

enum { otl_is_float_f32 = 1, otl_is_float_f64 = 1, otl_is_float_i8 = 0, otl_is_float_u8 = 0,
       otl_is_float_i16 = 0, otl_is_float_u16 = 0, otl_is_float_i32 = 0, otl_is_float_u32 = 0,
       otl_is_float_i64 = 0, otl_is_float_u64 = 0 };

BINARY_KERNELS(float, f32)
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
                           const otl_tinfo *tx, const otl_tinfo *ty, void *z) {
    const otl_tinfo *to = OUT_T(a, 0);
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

/* One broadcasting step; *relu_done tells whether a fused Relu was applied too. */
static onnxtl_status *binary_step(const otl_kernel_args *a, otl_op op, const void *x,
                                  const otl_tinfo *tx, const void *y, const otl_tinfo *ty, void *z,
                                  bool *relu_done) {
    *relu_done = flat_float_add(a, op, x, y, tx, ty, z);
    if (*relu_done) return NULL;
    const otl_tinfo *to = OUT_T(a, 0);
    int64_t sx[ONNXTL_MAX_RANK], sy[ONNXTL_MAX_RANK];
    broadcast_strides(tx, to, sx);
    broadcast_strides(ty, to, sy);
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

/* IEEE half and bfloat16 conversions with round-to-nearest-even. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (!man) bits = sign;
    else { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0);
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to infinity */
    if (ax < 0x38800000u) { /* subnormal half or zero */
        float mag;
        memcpy(&mag, &ax, sizeof mag);
        return sign | (uint16_t)lrintf(mag * 16777216.0f); /* mag / 2^-24, rounded to even */
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to even */
    return sign | (uint16_t)(ax >> 13);
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static double load_as_double(const void *p, int dtype, int64_t i) {
    switch (dtype) {
    case ONNXTL_FLOAT: return ((const float *)p)[i];
    case ONNXTL_DOUBLE: return ((const double *)p)[i];
    case ONNXTL_FLOAT16: return half_to_float(((const uint16_t *)p)[i]);
    case ONNXTL_BFLOAT16: return bf16_to_float(((const uint16_t *)p)[i]);
    case ONNXTL_INT8: return ((const int8_t *)p)[i];
    case ONNXTL_UINT8: case ONNXTL_BOOL: return ((const uint8_t *)p)[i];
    case ONNXTL_INT16: return ((const int16_t *)p)[i];
    case ONNXTL_UINT16: return ((const uint16_t *)p)[i];
    case ONNXTL_INT32: return ((const int32_t *)p)[i];
    case ONNXTL_UINT32: return ((const uint32_t *)p)[i];
    case ONNXTL_INT64: return (double)((const int64_t *)p)[i];
    default: return (double)((const uint64_t *)p)[i];
    }
}

/* Float to integer casts truncate toward zero; values out of range saturate
 * rather than invoke undefined behaviour. */
static int64_t to_int(double v, double lo, double hi) {
    if (v != v) return 0;
    return (int64_t)(v < lo ? lo : v > hi ? hi : v);
}

static void store_from_double(void *p, int dtype, int64_t i, double v) {
    switch (dtype) {
    case ONNXTL_FLOAT: ((float *)p)[i] = (float)v; break;
    case ONNXTL_DOUBLE: ((double *)p)[i] = v; break;
    case ONNXTL_FLOAT16: ((uint16_t *)p)[i] = float_to_half((float)v); break;
    case ONNXTL_BFLOAT16: ((uint16_t *)p)[i] = float_to_bf16((float)v); break;
    case ONNXTL_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    case ONNXTL_INT8: ((int8_t *)p)[i] = (int8_t)to_int(v, INT8_MIN, INT8_MAX); break;
    case ONNXTL_UINT8: ((uint8_t *)p)[i] = (uint8_t)to_int(v, 0, UINT8_MAX); break;
    case ONNXTL_INT16: ((int16_t *)p)[i] = (int16_t)to_int(v, INT16_MIN, INT16_MAX); break;
    case ONNXTL_UINT16: ((uint16_t *)p)[i] = (uint16_t)to_int(v, 0, UINT16_MAX); break;
    case ONNXTL_INT32: ((int32_t *)p)[i] = (int32_t)to_int(v, INT32_MIN, INT32_MAX); break;
    case ONNXTL_UINT32: ((uint32_t *)p)[i] = (uint32_t)to_int(v, 0, UINT32_MAX); break;
    case ONNXTL_INT64: ((int64_t *)p)[i] = to_int(v, -9.2233720368547748e18, 9.2233720368547748e18); break;
    default: ((uint64_t *)p)[i] = v <= 0 || v != v ? 0 : v >= 1.8446744073709552e19 ? UINT64_MAX : (uint64_t)v; break;
    }
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
                            : (int64_t)load_as_double(a->in[0], x->dtype, i);
            ((int64_t *)a->out[0])[i] = v;
        }
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) store_from_double(a->out[0], y->dtype, i, load_as_double(a->in[0], x->dtype, i));
    return NULL;
}
