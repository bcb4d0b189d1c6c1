/* The integer products of quantized models, ConvInteger and MatMulInteger:
 * uint8 or int8 operands less their zero points, summed exactly in int32. */
#include "cpu_kernels.h"

static int32_t q8(const void *p, int dtype, int64_t i) {
    return dtype == ONNXTL_UINT8 ? ((const uint8_t *)p)[i] : ((const int8_t *)p)[i];
}

/* An optional zero point: one value, or entry i of a per-row/channel one. */
static int32_t zero_point(const otl_kernel_args *a, int k, int64_t i) {
    if (a->n->n_in <= k || !a->in[k]) return 0;
    const otl_tinfo *z = IN_T(a, k);
    return q8(a->in[k], z->dtype, otl_tinfo_count(z) == 1 ? 0 : i);
}

static int32_t conv_integer_at(const otl_kernel_args *a, const otl_window *w, int64_t b, int64_t oc, const int64_t *o) {
    const otl_tinfo *x = IN_T(a, 0), *wt = IN_T(a, 1);
    const int64_t cg = wt->dims[1], group = oc / (wt->dims[0] / a->n->attrs.group);
    const int64_t taps = w->kernel[0] * w->kernel[1] * w->kernel[2], plane = w->in[0] * w->in[1] * w->in[2];
    const int32_t xz = zero_point(a, 2, 0), wz = zero_point(a, 3, oc);
    int32_t acc = 0;
    for (int64_t c = 0; c < cg; c++) {
        const int64_t x_base = (b * x->dims[1] + group * cg + c) * plane, w_base = (oc * cg + c) * taps;
        for (int64_t k = 0; k < taps; k++) {
            const int64_t kz = k / (w->kernel[1] * w->kernel[2]), ky = k / w->kernel[2] % w->kernel[1],
                          kx = k % w->kernel[2];
            const int64_t iz = o[0] * w->stride[0] - w->pad_begin[0] + kz * w->dilation[0],
                          iy = o[1] * w->stride[1] - w->pad_begin[1] + ky * w->dilation[1],
                          ix = o[2] * w->stride[2] - w->pad_begin[2] + kx * w->dilation[2];
            if (iz < 0 || iz >= w->in[0] || iy < 0 || iy >= w->in[1] || ix < 0 || ix >= w->in[2]) continue;
            int32_t xv = q8(a->in[0], x->dtype, x_base + (iz * w->in[1] + iy) * w->in[2] + ix);
            acc += (xv - xz) * (q8(a->in[1], wt->dtype, w_base + k) - wz);
        }
    }
    return acc;
}

onnxtl_status *otl_cpu_conv_integer(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *wt = IN_T(a, 1);
    otl_window w;
    OTL_TRY(otl_window_init(&a->n->attrs, x->rank - 2, x->dims + 2, wt->dims + 2, false, &w));
    const int64_t channels = x->dims[0] * wt->dims[0];
    int32_t *Y = a->out[0];
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < channels; p++) {
        int64_t o[3], i = p * w.out[0] * w.out[1] * w.out[2];
        for (o[0] = 0; o[0] < w.out[0]; o[0]++)
            for (o[1] = 0; o[1] < w.out[1]; o[1]++)
                for (o[2] = 0; o[2] < w.out[2]; o[2]++)
                    Y[i++] = conv_integer_at(a, &w, p / wt->dims[0], p % wt->dims[0], o);
    }
    return NULL;
}

/* The leading rank dims of t, as a tensor of their own (the batch axes). */
static otl_tinfo leading(const otl_tinfo *t, int rank) {
    otl_tinfo v = {.dtype = t->dtype, .rank = rank};
    for (int i = 0; i < rank; i++) v.dims[i] = t->dims[i];
    return v;
}

onnxtl_status *otl_cpu_matmul_integer(const otl_kernel_args *a) {
    const otl_tinfo *A = IN_T(a, 0), *B = IN_T(a, 1), *Y = OUT_T(a, 0);
    const bool a_vec = A->rank == 1, b_vec = B->rank == 1;
    const int64_t m = a_vec ? 1 : A->dims[A->rank - 2], k = A->dims[A->rank - 1], n = b_vec ? 1 : B->dims[B->rank - 1];
    const int a_batch = a_vec ? 0 : A->rank - 2, b_batch = b_vec ? 0 : B->rank - 2;
    const int y_batch = Y->rank - !a_vec - !b_vec;
    /* Per output batch axis, each operand's stride in matrices (0 where it repeats). */
    int64_t sa[ONNXTL_MAX_RANK], sb[ONNXTL_MAX_RANK], batches = 1;
    const otl_tinfo ab = leading(A, a_batch), bb = leading(B, b_batch), yb = leading(Y, y_batch);
    otl_broadcast_strides(&ab, &yb, sa);
    otl_broadcast_strides(&bb, &yb, sb);
    for (int i = 0; i < y_batch; i++) batches *= Y->dims[i];
    int32_t *out = a->out[0];
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t oa = 0, ob = 0, rest = bi;
        for (int i = y_batch - 1; i >= 0; i--) {
            oa += rest % Y->dims[i] * sa[i], ob += rest % Y->dims[i] * sb[i];
            rest /= Y->dims[i];
        }
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < n; c++) {
                const int32_t az = zero_point(a, 2, r), bz = zero_point(a, 3, c);
                int32_t acc = 0;
                for (int64_t j = 0; j < k; j++)
                    acc += (q8(a->in[0], A->dtype, (oa * m + r) * k + j) - az) *
                           (q8(a->in[1], B->dtype, (ob * k + j) * n + c) - bz);
                out[(bi * m + r) * n + c] = acc;
            }
    }
    return NULL;
}
