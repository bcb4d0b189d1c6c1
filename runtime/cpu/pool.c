/* MaxPool, AveragePool, LpPool and the global forms, over 3-D-normalised windows. */
#include <float.h>
#include <math.h>

#include "cpu_kernels.h"
#include "dtype.h"

typedef struct {
    int64_t begin, end;       /* input range the window covers, clipped to the input */
    int64_t padded;           /* positions inside input + explicit pads */
} window_span;

/* Positions kernel taps reach along one axis: start + j*dilation for j < k. */
static window_span axis_span(const otl_window *w, int axis, int64_t o) {
    int64_t start = o * w->stride[axis] - w->pad_begin[axis], d = w->dilation[axis];
    window_span s = {0, 0, 0};
    for (int64_t j = 0; j < w->kernel[axis]; j++) {
        int64_t p = start + j * d;
        if (p >= -w->pad_begin[axis] && p < w->in[axis] + w->pad_end[axis]) s.padded++;
    }
    s.begin = start;
    s.end = start + (w->kernel[axis] - 1) * d + 1;
    return s;
}

/* What a window computes: its maximum, its mean (over the pads too, or
 * not), or its Lp norm. */
typedef struct {
    otl_op op;
    bool count_pad;
    int64_t p;
} pool_kind;

static float pool_window(const float *src, const otl_window *w, const int64_t *o, const pool_kind *k) {
    window_span sp[3];
    for (int i = 0; i < 3; i++) sp[i] = axis_span(w, i, o[i]);
    const bool is_max = k->op == OP_MAXPOOL;
    float acc = is_max ? -FLT_MAX : 0.0f;
    int64_t count = 0;
    for (int64_t z = sp[0].begin; z < sp[0].end; z += w->dilation[0]) {
        if (z < 0 || z >= w->in[0]) continue;
        for (int64_t y = sp[1].begin; y < sp[1].end; y += w->dilation[1]) {
            if (y < 0 || y >= w->in[1]) continue;
            const float *row = src + (z * w->in[1] + y) * w->in[2];
            for (int64_t x = sp[2].begin; x < sp[2].end; x += w->dilation[2]) {
                if (x < 0 || x >= w->in[2]) continue;
                float v = row[x];
                if (is_max) acc = v > acc || v != v ? v : acc;
                else if (k->op == OP_LPPOOL) acc += k->p == 2 ? v * v : powf(fabsf(v), (float)k->p);
                else acc += v;
                count++;
            }
        }
    }
    if (is_max) return acc;
    if (k->op == OP_LPPOOL) return k->p == 2 ? sqrtf(acc) : powf(acc, 1.0f / (float)k->p);
    int64_t divisor = k->count_pad ? sp[0].padded * sp[1].padded * sp[2].padded : count;
    return divisor ? acc / (float)divisor : 0.0f;
}

/* One output position of channels-last pooling: its window read as rows of
 * C contiguous values, in the widest vectors the CPU has. */
OTL_ISA_CLONES static void pool_nhwc_position(const float *X, float *dst, int64_t C, const otl_window *w,
                                              window_span sy, window_span sx, bool is_max, bool count_pad) {
    const int64_t H = w->in[1], W = w->in[2];
    for (int64_t c = 0; c < C; c++) dst[c] = is_max ? -FLT_MAX : 0.0f;
    int64_t count = 0;
    for (int64_t y = sy.begin; y < sy.end; y += w->dilation[1]) {
        if (y < 0 || y >= H) continue;
        for (int64_t x = sx.begin; x < sx.end; x += w->dilation[2]) {
            if (x < 0 || x >= W) continue;
            const float *src = X + (y * W + x) * C;
            if (is_max) {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) dst[c] = src[c] > dst[c] ? src[c] : dst[c];
            } else {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) dst[c] += src[c];
            }
            count++;
        }
    }
    const int64_t divisor = count_pad ? sy.padded * sx.padded : count;
    if (!is_max)
        for (int64_t c = 0; c < C; c++) dst[c] = divisor ? dst[c] / (float)divisor : 0.0f;
}

static void pool_nhwc(const float *X, float *Y, int64_t batch, int64_t C, const otl_window *w, bool is_max,
                      bool count_pad) {
    const int64_t H = w->in[1], W = w->in[2], OH = w->out[1], OW = w->out[2];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < batch; b++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++)
                pool_nhwc_position(X + b * H * W * C, Y + ((b * OH + oy) * OW + ox) * C, C, w, axis_span(w, 1, oy),
                                   axis_span(w, 2, ox), is_max, count_pad);
}

/* The position in its plane of a window's largest value (the first of equal
 * ones), or -1 when the window lies wholly in the padding. */
static int64_t max_window_index(const void *src, int dtype, int64_t base, const otl_window *w, const int64_t *o) {
    window_span sp[3];
    for (int i = 0; i < 3; i++) sp[i] = axis_span(w, i, o[i]);
    int64_t best = -1;
    double best_v = 0;
    for (int64_t z = sp[0].begin; z < sp[0].end; z += w->dilation[0]) {
        if (z < 0 || z >= w->in[0]) continue;
        for (int64_t y = sp[1].begin; y < sp[1].end; y += w->dilation[1]) {
            if (y < 0 || y >= w->in[1]) continue;
            for (int64_t x = sp[2].begin; x < sp[2].end; x += w->dilation[2]) {
                if (x < 0 || x >= w->in[2]) continue;
                int64_t at = (z * w->in[1] + y) * w->in[2] + x;
                double v = otl_dtype_load(src, dtype, base + at);
                if (best < 0 || v > best_v) best = at, best_v = v;
            }
        }
    }
    return best;
}

/* A row-major position within a plane, column-major (storage_order 1). */
static int64_t column_major(const otl_window *w, int64_t at) {
    int64_t x = at % w->in[2], y = at / w->in[2] % w->in[1], z = at / (w->in[1] * w->in[2]);
    return z + w->in[0] * (y + w->in[1] * x);
}

/* MaxPool of any element type, and with its Indices output: each maximum's
 * position in the flattened input, batch and channel included. */
static void max_pool_indexed(const otl_kernel_args *a, const otl_window *w) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t planes = x->dims[0] * x->dims[1];
    const int64_t in_plane = w->in[0] * w->in[1] * w->in[2], out_plane = w->out[0] * w->out[1] * w->out[2];
    int64_t *indices = a->n->n_out > 1 ? a->out[1] : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        int64_t o[3], i = p * out_plane;
        for (o[0] = 0; o[0] < w->out[0]; o[0]++)
            for (o[1] = 0; o[1] < w->out[1]; o[1]++)
                for (o[2] = 0; o[2] < w->out[2]; o[2]++, i++) {
                    int64_t at = max_window_index(a->in[0], x->dtype, p * in_plane, w, o);
                    otl_dtype_store(a->out[0], x->dtype, i,
                                    at < 0 ? -FLT_MAX : otl_dtype_load(a->in[0], x->dtype, p * in_plane + at));
                    if (at >= 0 && a->n->attrs.storage_order) at = column_major(w, at);
                    if (indices) indices[i] = at < 0 ? -1 : p * in_plane + at;
                }
    }
}

onnxtl_status *otl_cpu_pool(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const otl_attrs *at = &a->n->attrs;
    otl_window w;
    OTL_TRY(otl_window_init(at, x->rank - 2, x->dims + 2, at->kernel, at->ceil_mode, &w));
    if (x->dtype != ONNXTL_FLOAT || (a->n->n_out > 1 && a->out[1])) {
        max_pool_indexed(a, &w);
        return NULL;
    }
    if (a->nhwc) {
        pool_nhwc(a->in[0], a->out[0], x->dims[0], x->dims[1], &w, a->n->op == OP_MAXPOOL, at->count_include_pad);
        return NULL;
    }
    const pool_kind kind = {a->n->op, at->count_include_pad, at->lp};
    const int64_t planes = x->dims[0] * x->dims[1];
    const int64_t in_plane = w.in[0] * w.in[1] * w.in[2], out_plane = w.out[0] * w.out[1] * w.out[2];
    const float *X = a->in[0];
    float *Y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *dst = Y + p * out_plane;
        int64_t o[3];
        for (o[0] = 0; o[0] < w.out[0]; o[0]++)
            for (o[1] = 0; o[1] < w.out[1]; o[1]++)
                for (o[2] = 0; o[2] < w.out[2]; o[2]++)
                    *dst++ = pool_window(X + p * in_plane, &w, o, &kind);
    }
    return NULL;
}

/* One image's global pooling, channels-last: plane rows of C values. */
OTL_ISA_CLONES static void global_pool_image(const float *X, float *dst, int64_t C, int64_t plane, bool is_max) {
    for (int64_t c = 0; c < C; c++) dst[c] = is_max ? -FLT_MAX : 0.0f;
    for (int64_t i = 0; i < plane; i++) {
        const float *src = X + i * C;
        if (is_max) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dst[c] = src[c] > dst[c] ? src[c] : dst[c];
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dst[c] += src[c];
        }
    }
    if (!is_max)
        for (int64_t c = 0; c < C; c++) dst[c] /= (float)plane;
}

static void global_pool_nhwc(const float *X, float *Y, int64_t batch, int64_t C, int64_t plane, bool is_max) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < batch; b++) global_pool_image(X + b * plane * C, Y + b * C, C, plane, is_max);
}

onnxtl_status *otl_cpu_global_pool(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    const int64_t planes = x->dims[0] * x->dims[1];
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const bool is_max = a->n->op == OP_GLOBALMAXPOOL;
    const float *X = a->in[0];
    float *Y = a->out[0];
    if (a->nhwc) { /* the [N, C, 1, 1] output is the same in both layouts */
        global_pool_nhwc(X, Y, x->dims[0], x->dims[1], plane, is_max);
        return NULL;
    }
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        const float *src = X + p * plane;
        double sum = 0;
        float mx = -FLT_MAX;
        for (int64_t i = 0; i < plane; i++) {
            sum += src[i];
            mx = src[i] > mx || src[i] != src[i] ? src[i] : mx;
        }
        Y[p] = is_max ? mx : (float)(sum / (double)plane);
    }
    return NULL;
}

/* What one output's gradient dy gives the inputs of its window o in plane
 * (the input plane's gradient) of input plane src. */
typedef void (*window_grad_fn)(const otl_kernel_args *f, const otl_window *w, const float *src, const int64_t *o,
                               float dy, float *plane);

/* The pools' backward passes: planes run in parallel, each on its own. */
static onnxtl_status *pool_backward(const otl_grad_args *a, window_grad_fn window_grad) {
    const otl_kernel_args *f = &a->f;
    const otl_tinfo *x = IN_T(f, 0);
    const otl_attrs *at = &f->n->attrs;
    otl_window w;
    OTL_TRY(otl_window_init(at, x->rank - 2, x->dims + 2, at->kernel, at->ceil_mode, &w));
    if (!a->din[0]) return NULL;
    const int64_t planes = x->dims[0] * x->dims[1];
    const int64_t in_plane = w.in[0] * w.in[1] * w.in[2], out_plane = w.out[0] * w.out[1] * w.out[2];
    const float *X = f->in[0], *dY = a->dout[0];
    float *dX = a->din[0];
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        int64_t o[3], i = p * out_plane;
        for (o[0] = 0; o[0] < w.out[0]; o[0]++)
            for (o[1] = 0; o[1] < w.out[1]; o[1]++)
                for (o[2] = 0; o[2] < w.out[2]; o[2]++, i++)
                    window_grad(f, &w, X + p * in_plane, o, dY[i], dX + p * in_plane);
    }
    return NULL;
}

/* MaxPool: to the window's largest input, the first of equal ones as torch picks it. */
static void max_window_grad(const otl_kernel_args *f, const otl_window *w, const float *src, const int64_t *o,
                            float dy, float *plane) {
    (void)f;
    const int64_t best = max_window_index(src, ONNXTL_FLOAT, 0, w, o);
    if (best >= 0) plane[best] += dy;
}

/* AveragePool: over the divisor its forward pass took (with or without the
 * pads), to every input the window covers. */
static void avg_window_grad(const otl_kernel_args *f, const otl_window *w, const float *src, const int64_t *o,
                            float dy, float *plane) {
    (void)src;
    window_span sp[3];
    int64_t inside = 1, padded = 1;
    for (int k = 0; k < 3; k++) {
        sp[k] = axis_span(w, k, o[k]);
        int64_t n = 0;
        for (int64_t q = sp[k].begin; q < sp[k].end; q += w->dilation[k]) n += q >= 0 && q < w->in[k];
        inside *= n, padded *= sp[k].padded;
    }
    const int64_t divisor = f->n->attrs.count_include_pad ? padded : inside;
    if (!divisor) return;
    const float g = dy / (float)divisor;
    for (int64_t z = sp[0].begin; z < sp[0].end; z += w->dilation[0]) {
        if (z < 0 || z >= w->in[0]) continue;
        for (int64_t y = sp[1].begin; y < sp[1].end; y += w->dilation[1]) {
            if (y < 0 || y >= w->in[1]) continue;
            for (int64_t x = sp[2].begin; x < sp[2].end; x += w->dilation[2])
                if (x >= 0 && x < w->in[2]) plane[(z * w->in[1] + y) * w->in[2] + x] += g;
        }
    }
}

onnxtl_status *otl_cpu_maxpool_backward(const otl_grad_args *a) { return pool_backward(a, max_window_grad); }
onnxtl_status *otl_cpu_avgpool_backward(const otl_grad_args *a) { return pool_backward(a, avg_window_grad); }

/* GlobalAveragePool spreads each output's gradient evenly over its plane. */
onnxtl_status *otl_cpu_global_avgpool_backward(const otl_grad_args *a) {
    const otl_tinfo *x = IN_T(&a->f, 0);
    if (!a->din[0]) return NULL;
    const int64_t planes = x->dims[0] * x->dims[1];
    int64_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= x->dims[i];
    const float *dY = a->dout[0];
    float *dX = a->din[0];
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < plane; i++) dX[p * plane + i] += dY[p] / (float)plane;
    return NULL;
}
