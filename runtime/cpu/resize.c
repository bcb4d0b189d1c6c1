/* Resize and Upsample: one pass per axis whose size or sampling changes,
 * each output index reading up to four input indices with weights.  The
 * linear and cubic filters are separable, so the passes compute what the N-D
 * interpolation does.  Coordinates are float, as ONNX Runtime computes them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#define MAX_TAPS 4

typedef struct {
    int n;
    int64_t index[MAX_TAPS];
    float weight[MAX_TAPS];
    bool outside; /* tf_crop_and_resize: the point lies outside the input */
} taps;

/* The input coordinate that output index x samples along one axis. */
static float source_coordinate(const otl_resize *r, int ax, int64_t x) {
    const float s = r->scale[ax], in = (float)r->in[ax], out = (float)r->out[ax], xf = (float)x;
    switch (r->coord_mode) {
    case COORD_HALF_PIXEL_SYMMETRIC: {
        const float adjustment = out / (s * in), offset = in / 2 * (1 - adjustment);
        return offset + (xf + 0.5f) / s - 0.5f;
    }
    case COORD_PYTORCH_HALF_PIXEL: return out > 1 ? (xf + 0.5f) / s - 0.5f : 0;
    case COORD_ALIGN_CORNERS: return out > 1 ? xf * (in - 1) / (out - 1) : 0;
    case COORD_ASYMMETRIC: return xf / s;
    case COORD_TF_HALF_PIXEL_FOR_NN: return (xf + 0.5f) / s;
    case COORD_TF_CROP_AND_RESIZE: {
        const float a = r->roi_start[ax], b = r->roi_end[ax];
        return out > 1 ? a * (in - 1) + xf * (b - a) * (in - 1) / (out - 1) : 0.5f * (a + b) * (in - 1);
    }
    default: return (xf + 0.5f) / s - 0.5f;
    }
}

static int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

static int64_t nearest_index(const otl_resize *r, int ax, float x) {
    const float f = floorf(x);
    switch (r->nearest_mode) {
    case NEAREST_ROUND_PREFER_CEIL: return (int64_t)(x == f + 0.5f ? f + 1 : roundf(x));
    case NEAREST_FLOOR: return (int64_t)f;
    case NEAREST_CEIL: return (int64_t)ceilf(x);
    case NEAREST_UPSAMPLE: return r->scale[ax] < 1 ? (int64_t)ceilf(x) : (int64_t)x;
    default: return (int64_t)(x == f + 0.5f ? f : roundf(x));
    }
}

/* Keys' cubic convolution kernel with coefficient a. */
static float cubic_weight(float s, float a) {
    s = fabsf(s);
    if (s <= 1) return ((a + 2) * s - (a + 3)) * s * s + 1;
    if (s < 2) return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a;
    return 0;
}

static void cubic_taps(const otl_attrs *at, int64_t n, float x, taps *t) {
    const float f = floorf(x), frac = x - f;
    float sum = 0;
    t->n = 4;
    for (int k = 0; k < 4; k++) {
        int64_t i = (int64_t)f - 1 + k;
        t->weight[k] = cubic_weight(frac + 1 - (float)k, at->cubic_a);
        if (at->exclude_outside && (i < 0 || i >= n)) t->weight[k] = 0;
        t->index[k] = clamp_index(i, n);
        sum += t->weight[k];
    }
    if (at->exclude_outside && sum != 0)
        for (int k = 0; k < 4; k++) t->weight[k] /= sum;
}

static taps taps_at(const otl_resize *r, const otl_attrs *at, int ax, int64_t o) {
    const int64_t n = r->in[ax];
    float x = source_coordinate(r, ax, o);
    taps t = {0};
    t.outside = r->coord_mode == COORD_TF_CROP_AND_RESIZE && (x < 0 || x > (float)(n - 1));
    if (at->resize_mode == RESIZE_NEAREST) {
        /* An axis kept at scale 1 keeps its indices, as in ONNX Runtime, even
         * where tf_half_pixel_for_nn's half-pixel offset and ceil would shift them. */
        const bool kept = r->scale[ax] == 1 && r->coord_mode != COORD_TF_CROP_AND_RESIZE;
        t.n = 1, t.index[0] = kept ? o : clamp_index(nearest_index(r, ax, x), n), t.weight[0] = 1;
    } else if (at->resize_mode == RESIZE_LINEAR) {
        x = x < 0 ? 0 : x > (float)(n - 1) ? (float)(n - 1) : x;
        const int64_t i = (int64_t)x;
        t.n = 2, t.index[0] = i, t.index[1] = clamp_index(i + 1, n);
        t.weight[1] = x - (float)i, t.weight[0] = 1 - t.weight[1];
    } else {
        cubic_taps(at, n, x, &t);
    }
    return t;
}

/* Whether sampling along the axis returns its input unchanged. */
static bool is_identity(const otl_resize *r, const taps *t, int ax) {
    if (r->out[ax] != r->in[ax]) return false;
    for (int64_t o = 0; o < r->out[ax]; o++) {
        if (t[o].outside) return false;
        for (int k = 0; k < t[o].n; k++)
            if (t[o].weight[k] != (t[o].index[k] == o ? 1.0f : 0.0f)) return false;
    }
    return true;
}

/* Resamples axis ax of src (dims) into dst, whose axis has out entries. */
static void resample_axis(const float *src, float *dst, const int64_t *dims, int rank, int ax, int64_t out,
                          const taps *t) {
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= dims[i];
    for (int i = ax + 1; i < rank; i++) inner *= dims[i];
    const int64_t in = dims[ax];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < outer; p++) {
        for (int64_t o = 0; o < out; o++) {
            float *d = dst + (p * out + o) * inner;
            const taps *tp = &t[o];
            for (int64_t k = 0; k < inner; k++) d[k] = 0;
            for (int j = 0; j < tp->n; j++) {
                const float *s = src + (p * in + tp->index[j]) * inner, w = tp->weight[j];
                if (w == 0) continue;
                for (int64_t k = 0; k < inner; k++) d[k] += w * s[k];
            }
        }
    }
}

/* tf_crop_and_resize: points outside the input along any axis take the
 * extrapolation value. */
static void extrapolate(float *y, const otl_resize *r, taps *const *per_axis, float value) {
    int64_t coord[ONNXTL_MAX_RANK] = {0}, count = 1;
    for (int i = 0; i < r->rank; i++) count *= r->out[i];
    for (int64_t i = 0; i < count; i++) {
        for (int d = 0; d < r->rank; d++)
            if (per_axis[d][coord[d]].outside) {
                y[i] = value;
                break;
            }
        for (int d = r->rank - 1; d >= 0 && ++coord[d] == r->out[d]; d--) coord[d] = 0;
    }
}

static void release_taps(taps **per_axis, int rank) {
    for (int i = 0; i < rank; i++) free(per_axis[i]);
}

static onnxtl_status *plan_taps(const otl_resize *r, const otl_attrs *at, taps **per_axis) {
    for (int ax = 0; ax < r->rank; ax++) {
        per_axis[ax] = malloc(sizeof(taps) * (size_t)r->out[ax]);
        if (!per_axis[ax]) return otl_nomem();
        for (int64_t o = 0; o < r->out[ax]; o++) per_axis[ax][o] = taps_at(r, at, ax, o);
    }
    return NULL;
}

/* The passes ping-pong between two scratch buffers; the last writes y. */
static onnxtl_status *run_passes(const otl_kernel_args *a, const otl_resize *r, taps *const *per_axis) {
    int64_t dims[ONNXTL_MAX_RANK], biggest = 0;
    int axes[ONNXTL_MAX_RANK], n_axes = 0;
    memcpy(dims, r->in, sizeof dims);
    for (int ax = 0; ax < r->rank; ax++) {
        if (is_identity(r, per_axis[ax], ax)) continue;
        axes[n_axes++] = ax;
        dims[ax] = r->out[ax];
        int64_t count = 1;
        for (int i = 0; i < r->rank; i++) count *= dims[i];
        if (count > biggest) biggest = count;
    }
    const otl_tinfo *x = IN_T(a, 0);
    if (!n_axes) {
        memcpy(a->out[0], a->in[0], otl_tinfo_bytes(x));
        return NULL;
    }
    float *scratch = n_axes > 1 ? malloc(sizeof(float) * 2 * (size_t)biggest) : NULL;
    if (n_axes > 1 && !scratch) return otl_nomem();
    const float *src = a->in[0];
    memcpy(dims, r->in, sizeof dims);
    for (int k = 0; k < n_axes; k++) {
        float *dst = k == n_axes - 1 ? a->out[0] : scratch + (k % 2) * biggest;
        resample_axis(src, dst, dims, r->rank, axes[k], r->out[axes[k]], per_axis[axes[k]]);
        dims[axes[k]] = r->out[axes[k]];
        src = dst;
    }
    free(scratch);
    return NULL;
}

onnxtl_status *otl_cpu_resize(const otl_kernel_args *a) {
    otl_resize r;
    OTL_TRY(otl_resize_plan(a->n, a->t, &r));
    taps *per_axis[ONNXTL_MAX_RANK] = {0};
    onnxtl_status *st = plan_taps(&r, &a->n->attrs, per_axis);
    if (!st) st = run_passes(a, &r, per_axis);
    if (!st && r.coord_mode == COORD_TF_CROP_AND_RESIZE) extrapolate(a->out[0], &r, per_axis, a->n->attrs.extrapolation);
    release_taps(per_axis, r.rank);
    return st;
}
