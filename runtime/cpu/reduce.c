/* Softmax, LogSoftmax and ReduceMean. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

/* Softmax works on (outer, dim, inner) blocks.  Before opset 13 the input is
 * coerced to 2-D at axis and normalised over the whole second part. */
static void softmax_layout(const otl_node *n, const otl_tinfo *x, int64_t *outer, int64_t *dim,
                           int64_t *inner) {
    int64_t axis = n->attrs.axis < 0 ? n->attrs.axis + x->rank : n->attrs.axis;
    *outer = *dim = *inner = 1;
    for (int i = 0; i < x->rank; i++) {
        if (i < axis) *outer *= x->dims[i];
        else if (i == axis || n->opset < 13) *dim *= x->dims[i];
        else *inner *= x->dims[i];
    }
}

onnxtl_status *otl_cpu_softmax(const otl_kernel_args *a) {
    int64_t outer, dim, inner;
    softmax_layout(a->n, IN_T(a, 0), &outer, &dim, &inner);
    const bool log_out = a->n->op == OP_LOGSOFTMAX;
    const float *X = a->in[0];
    float *Y = a->out[0];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *x = X + o * dim * inner + i;
            float *y = Y + o * dim * inner + i;
            float mx = -INFINITY;
            for (int64_t d = 0; d < dim; d++) mx = fmaxf(mx, x[d * inner]);
            double sum = 0;
            for (int64_t d = 0; d < dim; d++) sum += exp((double)x[d * inner] - mx);
            double log_sum = log(sum);
            for (int64_t d = 0; d < dim; d++) {
                double z = (double)x[d * inner] - mx;
                y[d * inner] = (float)(log_out ? z - log_sum : exp(z) / sum);
            }
        }
    }
    return NULL;
}

onnxtl_status *otl_cpu_reducemean(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    bool mask[ONNXTL_MAX_RANK];
    OTL_TRY(otl_reduce_mask(a->n, a->t, mask));
    /* Stride of each input axis in the output, 0 on reduced axes. */
    int64_t ostride[ONNXTL_MAX_RANK], s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        ostride[i] = mask[i] ? 0 : s;
        if (!mask[i]) s *= x->dims[i];
    }
    int64_t in_count = otl_tinfo_count(x), out_count = otl_tinfo_count(y);
    double *acc = calloc((size_t)out_count + 1, sizeof *acc);
    if (!acc) return otl_nomem();
    const float *X = a->in[0];
    int64_t idx[ONNXTL_MAX_RANK] = {0}, o = 0;
    for (int64_t i = 0; i < in_count; i++) {
        acc[o] += X[i];
        for (int d = x->rank - 1; d >= 0; d--) {
            o += ostride[d];
            if (++idx[d] < x->dims[d]) break;
            o -= ostride[d] * idx[d];
            idx[d] = 0;
        }
    }
    double per = out_count ? (double)in_count / (double)out_count : 1;
    float *Y = a->out[0];
    for (int64_t i = 0; i < out_count; i++) Y[i] = (float)(acc[i] / per);
    free(acc);
    return NULL;
}
