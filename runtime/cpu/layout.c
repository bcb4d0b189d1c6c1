/* Data movement: reshaping copies, Shape, the Gathers, Concat, Transpose, Pad.
 * All work on any element type through its byte size. */
#include <omp.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dtype.h"

onnxtl_status *otl_cpu_copy(const otl_kernel_args *a) {
    const otl_node *n = a->n;
    if (n->op == OP_DROPOUT && n->n_in > 2 && a->in[2] && *(const uint8_t *)a->in[2])
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "Dropout in training mode is not supported");
    if (a->out[0] != a->in[0]) memcpy(a->out[0], a->in[0], otl_tinfo_bytes(IN_T(a, 0)));
    if (n->op == OP_DROPOUT && n->n_out > 1 && a->out[1]) /* inference keeps every element */
        memset(a->out[1], 1, (size_t)otl_tinfo_count(OUT_T(a, 1)));
    return NULL;
}

onnxtl_status *otl_cpu_shape(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    int64_t start, end;
    otl_shape_range(&a->n->attrs, x->rank, &start, &end);
    int64_t *y = a->out[0];
    for (int64_t i = start; i < end; i++) y[i - start] = x->dims[i];
    return NULL;
}

/* Splits a shape around an axis into (outer, axis dim, inner) element counts. */
static void split_at(const otl_tinfo *t, int64_t axis, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < t->rank; i++) {
        if (i < axis) *outer *= t->dims[i];
        else if (i > axis) *inner *= t->dims[i];
    }
}

/* Index i of an int32 or int64 tensor, checked against an axis of size dim
 * and made non-negative. */
static onnxtl_status *index_at(const otl_tinfo *t, const void *p, int64_t i, int64_t dim, int64_t *k) {
    *k = t->dtype == ONNXTL_INT64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
    if (*k < -dim || *k >= dim)
        return otl_error(ONNXTL_ERR_ARG, "index %lld is out of range for axis size %lld", (long long)*k,
                         (long long)dim);
    if (*k < 0) *k += dim;
    return NULL;
}

onnxtl_status *otl_cpu_gather(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *ti = IN_T(a, 1);
    int64_t axis, outer, inner;
    OTL_TRY(otl_norm_axis(a->n->attrs.axis, x->rank, &axis));
    split_at(x, axis, &outer, &inner);
    const int64_t dim = x->dims[axis], q = otl_tinfo_count(ti);
    const size_t es = otl_dtype_size(x->dtype), row = (size_t)inner * es;
    const char *src = a->in[0];
    char *dst = a->out[0];
    for (int64_t j = 0; j < q; j++) {
        int64_t k;
        OTL_TRY(index_at(ti, a->in[1], j, dim, &k));
        for (int64_t o = 0; o < outer; o++)
            memcpy(dst + ((size_t)(o * q + j)) * row, src + ((size_t)(o * dim + k)) * row, row);
    }
    return NULL;
}

static void row_major_strides(const otl_tinfo *t, int64_t *strides) {
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) strides[i] = s, s *= t->dims[i];
}

/* out[..., j, ...] = data[..., indices[..., j, ...], ...] along axis; the
 * other coordinates are the output's own. */
onnxtl_status *otl_cpu_gather_elements(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *ti = IN_T(a, 1);
    int64_t axis, strides[ONNXTL_MAX_RANK], coord[ONNXTL_MAX_RANK] = {0};
    OTL_TRY(otl_norm_axis(a->n->attrs.axis, x->rank, &axis));
    row_major_strides(x, strides);
    const size_t es = otl_dtype_size(x->dtype);
    const int64_t count = otl_tinfo_count(ti);
    for (int64_t i = 0; i < count; i++) {
        int64_t k, offset = 0;
        OTL_TRY(index_at(ti, a->in[1], i, x->dims[axis], &k));
        for (int d = 0; d < x->rank; d++) offset += (d == axis ? k : coord[d]) * strides[d];
        memcpy((char *)a->out[0] + (size_t)i * es, (const char *)a->in[0] + (size_t)offset * es, es);
        for (int d = ti->rank - 1; d >= 0 && ++coord[d] == ti->dims[d]; d--) coord[d] = 0;
    }
    return NULL;
}

/* Each index tuple of length k copies one slice of data, within its batch. */
onnxtl_status *otl_cpu_gather_nd(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *ti = IN_T(a, 1);
    const int b = (int)a->n->attrs.batch_dims, k = (int)ti->dims[ti->rank - 1];
    int64_t strides[ONNXTL_MAX_RANK], batches = 1, tuples = 1;
    row_major_strides(x, strides);
    for (int i = 0; i < b; i++) batches *= x->dims[i];
    for (int i = b; i < ti->rank - 1; i++) tuples *= ti->dims[i];
    const size_t es = otl_dtype_size(x->dtype);
    const int64_t slice = strides[b + k - 1], batch_size = b ? strides[b - 1] : 0;
    const int64_t *idx = a->in[1];
    char *dst = a->out[0];
    for (int64_t bi = 0; bi < batches; bi++) {
        for (int64_t q = 0; q < tuples; q++, idx += k) {
            int64_t offset = bi * batch_size;
            for (int j = 0; j < k; j++) {
                int64_t v;
                OTL_TRY(index_at(ti, idx, j, x->dims[b + j], &v));
                offset += v * strides[b + j];
            }
            memcpy(dst, (const char *)a->in[0] + (size_t)offset * es, (size_t)slice * es);
            dst += (size_t)slice * es;
        }
    }
    return NULL;
}

/* The dims of a 4-D tensor in memory order: N, H, W, C when channels-last. */
static void memory_dims(const otl_tinfo *t, bool nhwc, int64_t *dims) {
    static const int from_nchw[4] = {0, 2, 3, 1};
    for (int i = 0; i < t->rank; i++) dims[i] = t->dims[nhwc && t->rank == 4 ? from_nchw[i] : i];
}

onnxtl_status *otl_cpu_concat(const otl_kernel_args *a) {
    static const int to_nhwc_axis[4] = {0, 3, 1, 2};
    const otl_tinfo *y = OUT_T(a, 0);
    int64_t axis, outer = 1, inner = 1, ydims[ONNXTL_MAX_RANK];
    OTL_TRY(otl_norm_axis(a->n->attrs.axis, y->rank, &axis));
    const bool nhwc = a->nhwc && y->rank == 4;
    if (nhwc) axis = to_nhwc_axis[axis];
    memory_dims(y, nhwc, ydims);
    for (int i = 0; i < y->rank; i++) {
        if (i < axis) outer *= ydims[i];
        else if (i > axis) inner *= ydims[i];
    }
    const size_t es = otl_dtype_size(y->dtype);
    char *dst = a->out[0];
    size_t out_row = (size_t)(ydims[axis] * inner) * es, offset = 0;
    for (int k = 0; k < a->n->n_in; k++) {
        int64_t xdims[ONNXTL_MAX_RANK];
        memory_dims(IN_T(a, k), nhwc, xdims);
        size_t chunk = (size_t)(xdims[axis] * inner) * es;
#pragma omp parallel for schedule(static) if (outer > 64)
        for (int64_t o = 0; o < outer; o++)
            memcpy(dst + (size_t)o * out_row + offset, (const char *)a->in[k] + (size_t)o * chunk, chunk);
        offset += chunk;
    }
    return NULL;
}

/* Copies one element of es bytes; the common sizes as plain loads and stores. */
static inline void copy_element(char *dst, const char *src, size_t es) {
    switch (es) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 2: memcpy(dst, src, 2); break;
    case 1: *dst = *src; break;
    default: memcpy(dst, src, es);
    }
}

/* One output row (a run of the last output axis) read at input stride step:
 * one copy where the run is contiguous, one element repeated where it is
 * broadcast. */
static void copy_row(char *dst, const char *src, int64_t step, int64_t run, size_t es) {
    if (step == 1) {
        memcpy(dst, src, (size_t)run * es);
    } else if (step == 0) {
        for (int64_t j = 0; j < run; j++) copy_element(dst + (size_t)j * es, src, es);
    } else {
        for (int64_t j = 0; j < run; j++) copy_element(dst + (size_t)j * es, src + (ptrdiff_t)(j * step) * (ptrdiff_t)es, es);
    }
}

/* Writes y in row-major order, output index i reading the input at base plus
 * i's coordinates times the per-axis input strides: Transpose's permuted
 * strides, Slice's steps, Expand's zeros.  Axes of size 1 are dropped and
 * trailing axes the input walks contiguously merged first, so that rows are
 * long; the threads take equal shares of the rows, each starting its index
 * from its first row. */
static void strided_copy(const char *src, int64_t base, const int64_t *stride, char *dst, const otl_tinfo *y,
                         size_t es) {
    const int64_t count = otl_tinfo_count(y);
    if (count == 0) return;
    int r = 0;
    int64_t dims[ONNXTL_MAX_RANK], st[ONNXTL_MAX_RANK];
    for (int i = 0; i < y->rank; i++)
        if (y->dims[i] != 1) dims[r] = y->dims[i], st[r++] = stride[i];
    while (r >= 2 && st[r - 2] == st[r - 1] * dims[r - 1]) {
        dims[r - 2] *= dims[r - 1];
        st[r - 2] = st[r - 1];
        r--;
    }
    const int64_t run = r > 0 ? dims[r - 1] : 1, step = r > 0 ? st[r - 1] : 0, rows = count / run;
    const int outer = r > 0 ? r - 1 : 0;
#pragma omp parallel if (count * (int64_t)es > (1 << 18))
    {
        const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t begin = rows * t / nt, end = rows * (t + 1) / nt;
        int64_t idx[ONNXTL_MAX_RANK] = {0}, off = base, rest = begin;
        for (int d = outer - 1; d >= 0; d--) {
            idx[d] = rest % dims[d], rest /= dims[d];
            off += idx[d] * st[d];
        }
        for (int64_t row = begin; row < end; row++) {
            copy_row(dst + (size_t)(row * run) * es, src + (size_t)off * es, step, run, es);
            otl_index_next(outer, dims, st, idx, &off);
        }
    }
}

onnxtl_status *otl_cpu_transpose(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    if (a->nhwc) { /* the layout planner found the permutation to be the storage's own */
        memcpy(a->out[0], a->in[0], otl_tinfo_bytes(x));
        return NULL;
    }
    const int r = x->rank;
    int64_t in_stride[ONNXTL_MAX_RANK], s = 1, perm_stride[ONNXTL_MAX_RANK];
    for (int i = r - 1; i >= 0; i--) {
        in_stride[i] = s;
        s *= x->dims[i];
    }
    for (int i = 0; i < r; i++)
        perm_stride[i] = in_stride[a->n->attrs.n_perm >= 0 ? a->n->attrs.perm[i] : r - 1 - i];
    strided_copy(a->in[0], 0, perm_stride, a->out[0], y, otl_dtype_size(x->dtype));
    return NULL;
}

/* The constant Pad writes: an input (opset 11+, same type as x) or the attribute. */
static void pad_value_bytes(const otl_kernel_args *a, int dtype, unsigned char *value) {
    size_t es = otl_dtype_size(dtype);
    memset(value, 0, es);
    if (a->n->opset >= 11) {
        if (a->n->n_in > 2 && a->in[2]) memcpy(value, a->in[2], es);
    } else {
        memcpy(value, &a->n->attrs.pad_value, sizeof(float));
    }
}

/* The input index that output position p (past the input's start) reads:
 * itself in constant mode (outside means the pad value), reflected about
 * the ends, the nearest end, or wrapped around. */
static int64_t source_index(int64_t p, int64_t dim, int mode) {
    if (mode == 0 || (p >= 0 && p < dim)) return p;
    if (mode == 2) return p < 0 ? 0 : dim - 1;
    if (mode == 3) return ((p % dim) + dim) % dim;
    return p < 0 ? -p : 2 * (dim - 1) - p;
}

onnxtl_status *otl_cpu_pad(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    const int r = x->rank;
    int64_t pads[2 * ONNXTL_MAX_RANK], in_stride[ONNXTL_MAX_RANK], s = 1;
    OTL_TRY(otl_pad_amounts(a->n, a->t, r, pads));
    for (int i = r - 1; i >= 0; i--) {
        in_stride[i] = s;
        s *= x->dims[i];
    }
    const size_t es = otl_dtype_size(x->dtype);
    unsigned char value[16];
    pad_value_bytes(a, x->dtype, value);
    const int64_t count = otl_tinfo_count(y);
    const char *src = a->in[0];
    char *dst = a->out[0];
    const int mode = a->n->attrs.pad_mode;
    int64_t idx[ONNXTL_MAX_RANK] = {0};
    for (int64_t i = 0; i < count; i++) {
        int64_t off = 0;
        bool inside = true;
        for (int d = 0; d < r && inside; d++) {
            int64_t p = source_index(idx[d] - pads[d], x->dims[d], mode);
            inside = p >= 0 && p < x->dims[d];
            off += p * in_stride[d];
        }
        memcpy(dst + (size_t)i * es, inside ? src + (size_t)off * es : (const char *)value, es);
        for (int d = r - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d]) break;
            idx[d] = 0;
        }
    }
    return NULL;
}

/* dst = src transposed, for n matrices of rows x cols one after another: in
 * 32 x 32 tiles, whose rows stay in cache while their columns are written
 * (a plain loop strides through memory on one side or the other). */
enum { TILE = 32 };

static void transpose_batch(const float *src, float *dst, int64_t n, int64_t rows, int64_t cols) {
    const int64_t tile_rows = (rows + TILE - 1) / TILE, tile_cols = (cols + TILE - 1) / TILE;
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t b = 0; b < n; b++)
        for (int64_t ti = 0; ti < tile_rows; ti++)
            for (int64_t tj = 0; tj < tile_cols; tj++) {
                const float *s = src + b * rows * cols;
                float *d = dst + b * rows * cols;
                const int64_t i_end = ti * TILE + TILE < rows ? ti * TILE + TILE : rows;
                const int64_t j_end = tj * TILE + TILE < cols ? tj * TILE + TILE : cols;
                for (int64_t i = ti * TILE; i < i_end; i++)
                    for (int64_t j = tj * TILE; j < j_end; j++) d[j * rows + i] = s[i * cols + j];
            }
}

void otl_nchw_to_nhwc(const float *src, float *dst, const int64_t *dims) {
    transpose_batch(src, dst, dims[0], dims[1], dims[2] * dims[3]);
}

void otl_nhwc_to_nchw(const float *src, float *dst, const int64_t *dims) {
    transpose_batch(src, dst, dims[0], dims[2] * dims[3], dims[1]);
}

onnxtl_status *otl_cpu_slice(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    int64_t start[ONNXTL_MAX_RANK], step[ONNXTL_MAX_RANK], dims[ONNXTL_MAX_RANK], stride[ONNXTL_MAX_RANK];
    OTL_TRY(otl_slice_plan(a->n, a->t, start, step, dims));
    int64_t s = 1, base = 0;
    for (int i = x->rank - 1; i >= 0; i--) {
        base += start[i] * s;
        stride[i] = step[i] * s;
        s *= x->dims[i];
    }
    strided_copy(a->in[0], base, stride, a->out[0], y, otl_dtype_size(x->dtype));
    return NULL;
}

onnxtl_status *otl_cpu_expand(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    int64_t stride[ONNXTL_MAX_RANK];
    otl_broadcast_strides(x, y, stride);
    strided_copy(a->in[0], 0, stride, a->out[0], y, otl_dtype_size(x->dtype));
    return NULL;
}

onnxtl_status *otl_cpu_constant_of_shape(const otl_kernel_args *a) {
    const otl_tinfo *y = OUT_T(a, 0);
    const size_t es = otl_dtype_size(y->dtype);
    const int64_t count = otl_tinfo_count(y);
    char *dst = a->out[0];
    for (int64_t i = 0; i < count; i++) memcpy(dst + (size_t)i * es, a->n->attrs.fill.bytes, es);
    return NULL;
}

onnxtl_status *otl_cpu_range(const otl_kernel_args *a) {
    const otl_tinfo *y = OUT_T(a, 0);
    const double start = otl_dtype_load(a->in[0], y->dtype, 0), delta = otl_dtype_load(a->in[2], y->dtype, 0);
    for (int64_t i = 0; i < y->dims[0]; i++) otl_dtype_store(a->out[0], y->dtype, i, start + (double)i * delta);
    return NULL;
}

onnxtl_status *otl_cpu_split(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    int64_t axis, sizes[OTL_MAX_SPLIT], outer = 1, inner = 1;
    OTL_TRY(otl_split_sizes(a->n, a->t, &axis, sizes));
    for (int i = 0; i < x->rank; i++) {
        if (i < axis) outer *= x->dims[i];
        else if (i > axis) inner *= x->dims[i];
    }
    const size_t es = otl_dtype_size(x->dtype), in_row = (size_t)(x->dims[axis] * inner) * es;
    size_t offset = 0;
    for (int k = 0; k < a->n->n_out; k++) {
        const size_t chunk = (size_t)(sizes[k] * inner) * es;
        for (int64_t o = 0; a->out[k] && o < outer; o++)
            memcpy((char *)a->out[k] + (size_t)o * chunk, (const char *)a->in[0] + (size_t)o * in_row + offset, chunk);
        offset += chunk;
    }
    return NULL;
}

onnxtl_status *otl_cpu_tile(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    const size_t es = otl_dtype_size(x->dtype);
    const int64_t count = otl_tinfo_count(y);
    int64_t stride[ONNXTL_MAX_RANK], s = 1, idx[ONNXTL_MAX_RANK] = {0};
    for (int i = x->rank - 1; i >= 0; i--) stride[i] = s, s *= x->dims[i];
    for (int64_t i = 0; i < count; i++) {
        int64_t off = 0;
        for (int d = 0; d < y->rank; d++) off += (idx[d] % x->dims[d]) * stride[d];
        memcpy((char *)a->out[0] + (size_t)i * es, (const char *)a->in[0] + (size_t)off * es, es);
        for (int d = y->rank - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d]) break;
            idx[d] = 0;
        }
    }
    return NULL;
}

onnxtl_status *otl_cpu_argmax(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0);
    int64_t axis, outer = 1, inner = 1;
    OTL_TRY(otl_norm_axis(a->n->attrs.axis, x->rank, &axis));
    for (int i = 0; i < x->rank; i++) {
        if (i < axis) outer *= x->dims[i];
        else if (i > axis) inner *= x->dims[i];
    }
    const int64_t dim = x->dims[axis];
    const bool max = a->n->op == OP_ARGMAX, last = a->n->attrs.select_last;
    int64_t *y = a->out[0];
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t best = 0;
            double bv = otl_dtype_load(a->in[0], x->dtype, o * dim * inner + i);
            for (int64_t j = 1; j < dim; j++) {
                const double v = otl_dtype_load(a->in[0], x->dtype, (o * dim + j) * inner + i);
                const bool better = max ? (v > bv || (last && v == bv)) : (v < bv || (last && v == bv));
                if (better) best = j, bv = v;
            }
            y[o * inner + i] = best;
        }
    }
    return NULL;
}

/* Both directions index the same 6-D view: DepthToSpace reads
 * [N, b, b, C', H, W] (DCR) or [N, C', b, b, H, W] (CRD) into [N, C', H, b, W, b];
 * SpaceToDepth is DCR's inverse. */
onnxtl_status *otl_cpu_depth_to_space(const otl_kernel_args *a) {
    const bool to_space = a->n->op == OP_DEPTHTOSPACE, crd = a->n->attrs.crd;
    const otl_tinfo *big = to_space ? OUT_T(a, 0) : IN_T(a, 0); /* the one with space */
    const int64_t b = a->n->attrs.blocksize, n = big->dims[0], c = big->dims[1], h = big->dims[2] / b,
                  w = big->dims[3] / b;
    const size_t es = otl_dtype_size(big->dtype);
    for (int64_t in = 0; in < n; in++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t y = 0; y < h * b; y++)
                for (int64_t x = 0; x < w * b; x++) {
                    const int64_t by = y % b, bx = x % b;
                    const int64_t depth = crd ? (ch * b + by) * b + bx : (by * b + bx) * c + ch;
                    const int64_t space_at = ((in * c + ch) * h * b + y) * w * b + x;
                    const int64_t depth_at = ((in * c * b * b + depth) * h + y / b) * w + x / b;
                    const char *src = a->in[0];
                    char *dst = a->out[0];
                    memcpy(dst + (size_t)(to_space ? space_at : depth_at) * es,
                           src + (size_t)(to_space ? depth_at : space_at) * es, es);
                }
    return NULL;
}
