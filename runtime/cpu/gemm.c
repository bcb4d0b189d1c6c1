/* Gemm and MatMul on oneDNN's sgemm (chosen by measurement: ~170 GFLOP/s on
 * an AVX-512 machine, against ~30 for Debian's OpenBLAS), where a product's
 * weights are computed or its Gemm is not a Linear layer; Linear layers by
 * constant weights run on oneDNN's matmul with the weights packed once
 * (dnnl_matmul.c). */
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

#include "cpu_kernels.h"

onnxtl_status *otl_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc) {
    if (m == 0 || n == 0) return NULL;
    if (k == 0) { /* oneDNN leaves C untouched; the product of empty matrices is zero */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return NULL;
    }
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda,
                                  b, ldb, beta, c, ldc);
    if (st != dnnl_success)
        return otl_error(ONNXTL_ERR_RUNTIME, "oneDNN sgemm %lldx%lldx%lld failed (status %d)",
                         (long long)m, (long long)n, (long long)k, (int)st);
    return NULL;
}

/* Y = beta * C, broadcast (right-aligned) to the m x n output: the product
 * then accumulates onto it (sgemm's beta = 1), so no second pass over Y. */
static void fill_gemm_bias(const otl_tinfo *ct, const float *c, float beta, int64_t m, int64_t n, float *y) {
    const int64_t cm = ct->rank >= 2 ? ct->dims[ct->rank - 2] : 1;
    const int64_t cn = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
#pragma omp parallel for schedule(static) if (m * n > 65536)
    for (int64_t i = 0; i < m; i++) {
        const float *row = c + (cm == 1 ? 0 : i) * cn;
        for (int64_t j = 0; j < n; j++) y[i * n + j] = beta * row[cn == 1 ? 0 : j];
    }
}

onnxtl_status *otl_cpu_gemm(const otl_kernel_args *a) {
    const otl_attrs *at = &a->n->attrs;
    const otl_tinfo *ta = IN_T(a, 0), *tb = IN_T(a, 1), *ty = OUT_T(a, 0);
    int64_t m = ty->dims[0], n = ty->dims[1], k = at->trans_a ? ta->dims[0] : ta->dims[1];
    float *y = a->out[0];
    const bool bias = a->n->n_in > 2 && a->in[2] && at->beta != 0;
    if (bias) fill_gemm_bias(IN_T(a, 2), a->in[2], at->beta, m, n, y);
    return otl_sgemm(at->trans_a, at->trans_b, m, n, k, at->alpha, a->in[0], ta->dims[1], a->in[1], tb->dims[1],
                     bias ? 1.0f : 0.0f, y, n);
}

/* Strides of a right-aligned batch shape inside the output's batch shape (0 where broadcast). */
static void batch_strides(const otl_tinfo *x, int xb, const int64_t *out_batch, int ob,
                          int64_t mat, int64_t *strides) {
    int64_t s = mat;
    for (int i = ob - 1; i >= 0; i--) {
        int xi = i - (ob - xb);
        int64_t d = xi >= 0 ? x->dims[xi] : 1;
        strides[i] = d == 1 && out_batch[i] != 1 ? 0 : s;
        s *= d;
    }
}

/* rows x n = A B, plus the fused bias row of a Linear layer's MatMul, then
 * its fused activation (the load-time passes fuse them only where B is a
 * constant matrix, which comes here where oneDNN's matmul does not run). */
static onnxtl_status *linear_rows(const otl_kernel_args *a, int64_t rows, int64_t n, int64_t k) {
    const bool bias = a->n->n_in > 2 && a->in[2];
    float *y = a->out[0];
    if (bias) fill_gemm_bias(IN_T(a, 2), a->in[2], 1.0f, rows, n, y);
    OTL_TRY(otl_sgemm(false, false, rows, n, k, 1.0f, a->in[0], k, a->in[1], n, bias ? 1.0f : 0.0f, y, n));
    const otl_attrs *at = &a->n->attrs;
    if (!at->fused_act) return NULL;
#pragma omp parallel for schedule(static) if (rows * n > 65536)
    for (int64_t i = 0; i < rows * n; i++) y[i] = otl_fused_activation(at, y[i]);
    return NULL;
}

onnxtl_status *otl_cpu_matmul(const otl_kernel_args *a) {
    otl_tinfo ta = *IN_T(a, 0), tb = *IN_T(a, 1);
    if (ta.rank == 1) { ta.rank = 2; ta.dims[1] = ta.dims[0]; ta.dims[0] = 1; }
    if (tb.rank == 1) { tb.rank = 2; tb.dims[1] = 1; }
    int64_t m = ta.dims[ta.rank - 2], k = ta.dims[ta.rank - 1], n = tb.dims[tb.rank - 1];
    int ab = ta.rank - 2, bb = tb.rank - 2, ob = ab > bb ? ab : bb;
    int64_t out_batch[ONNXTL_MAX_RANK], sa[ONNXTL_MAX_RANK], sb[ONNXTL_MAX_RANK], batches = 1;
    for (int i = 0; i < ob; i++) {
        int ia = i - (ob - ab), ib = i - (ob - bb);
        int64_t da = ia >= 0 ? ta.dims[ia] : 1, db = ib >= 0 ? tb.dims[ib] : 1;
        out_batch[i] = da == 1 ? db : da;
        batches *= out_batch[i];
    }
    batch_strides(&ta, ab, out_batch, ob, m * k, sa);
    batch_strides(&tb, bb, out_batch, ob, k * n, sb);
    const float *A = a->in[0], *B = a->in[1];
    float *Y = a->out[0];
    bool b_shared = true, a_packed = true; /* one B for every batch; A's batches one after another */
    for (int i = 0; i < ob; i++) b_shared &= sb[i] == 0;
    for (int64_t i = 0, s = 1; i < ob; i++) a_packed &= sa[ob - 1 - i] == m * k * s, s *= out_batch[ob - 1 - i];
    if (b_shared && a_packed) /* a Linear layer over [batch..., m, k]: one product of batches * m rows */
        return linear_rows(a, batches * m, n, k);
    /* Many small products (attention) go side by side, each on one core. */
    onnxtl_status *err = NULL;
#pragma omp parallel for schedule(static) if (batches > 1 && m * n * k < (1 << 22))
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t oa = 0, obf = 0, rest = bi;
        for (int i = ob - 1; i >= 0; i--) {
            const int64_t v = rest % out_batch[i];
            rest /= out_batch[i];
            oa += v * sa[i], obf += v * sb[i];
        }
        onnxtl_status *st = otl_sgemm(false, false, m, n, k, 1.0f, A + oa, k, B + obf, n, 0.0f, Y + bi * m * n, n);
        if (st) {
#pragma omp critical
            {
                if (!err) err = st;
                else onnxtl_status_release(st);
            }
        }
    }
    return err;
}

/* Y = alpha A B' + beta C with B' = B or B^T: dA += alpha dY B'^T,
 * dB' += alpha A^T dY, and dC += beta dY summed over what C broadcasts. */
onnxtl_status *otl_cpu_gemm_backward(const otl_grad_args *a) {
    const otl_kernel_args *f = &a->f;
    const otl_attrs *at = &f->n->attrs;
    const otl_tinfo *ta = IN_T(f, 0), *ty = OUT_T(f, 0);
    if (at->trans_a) return otl_error(ONNXTL_ERR_UNSUPPORTED, "training a Gemm with transA=1");
    const int64_t m = ty->dims[0], n = ty->dims[1], k = ta->dims[1];
    const float *A = f->in[0], *B = f->in[1], *dY = a->dout[0];
    if (a->din[0])
        OTL_TRY(otl_sgemm(false, !at->trans_b, m, k, n, at->alpha, dY, n, B, at->trans_b ? k : n, 1.0f, a->din[0], k));
    if (a->din[1] && at->trans_b) OTL_TRY(otl_sgemm(true, false, n, k, m, at->alpha, dY, n, A, k, 1.0f, a->din[1], k));
    if (a->din[1] && !at->trans_b) OTL_TRY(otl_sgemm(true, false, k, n, m, at->alpha, A, k, dY, n, 1.0f, a->din[1], n));
    if (f->n->n_in > 2 && a->din[2]) {
        const otl_tinfo *ct = IN_T(f, 2);
        const int64_t cm = ct->rank >= 2 ? ct->dims[ct->rank - 2] : 1, cn = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) a->din[2][(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)] += at->beta * dY[i * n + j];
    }
    return NULL;
}
