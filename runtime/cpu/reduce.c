/* Softmax, LogSoftmax and the Reduce ops. */
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

/* Softmax of one contiguous row, in float: the maximum, exp(x - max) by
 * otl_exp_poly and their sum vectorise, for the widest ISA the CPU has. */
OTL_ISA_CLONES
static void softmax_row(const float *x, float *y, int64_t dim, bool log_out) {
    float mx = -INFINITY, sum = 0;
#pragma omp simd reduction(max : mx)
    for (int64_t d = 0; d < dim; d++) mx = x[d] > mx ? x[d] : mx;
#pragma omp simd reduction(+ : sum)
    for (int64_t d = 0; d < dim; d++) {
        y[d] = otl_exp_poly(x[d] - mx);
        sum += y[d];
    }
    const float inv = 1.0f / sum, log_sum = logf(sum);
#pragma omp simd
    for (int64_t d = 0; d < dim; d++) y[d] = log_out ? x[d] - mx - log_sum : y[d] * inv;
}

static void softmax_rows(const float *X, float *Y, int64_t rows, int64_t dim, bool log_out) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < rows; o++) softmax_row(X + o * dim, Y + o * dim, dim, log_out);
}

onnxtl_status *otl_cpu_softmax(const otl_kernel_args *a) {
    int64_t outer, dim, inner;
    softmax_layout(a->n, IN_T(a, 0), &outer, &dim, &inner);
    const bool log_out = a->n->op == OP_LOGSOFTMAX;
    const float *X = a->in[0];
    float *Y = a->out[0];
    if (inner == 1) {
        softmax_rows(X, Y, outer, dim, log_out);
        return NULL;
    }
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

static double reduce_start(otl_op op) {
    switch (op) {
    case OP_REDUCEMAX: return -INFINITY;
    case OP_REDUCEMIN: return INFINITY;
    case OP_REDUCEPROD: return 1;
    default: return 0;
    }
}

static double reduce_step(otl_op op, double acc, double x) {
    switch (op) {
    case OP_REDUCEMAX: return x > acc || x != x ? x : acc;
    case OP_REDUCEMIN: return x < acc || x != x ? x : acc;
    case OP_REDUCEPROD: return acc * x;
    case OP_REDUCEL1: return acc + fabs(x);
    case OP_REDUCEL2: case OP_REDUCESUMSQUARE: return acc + x * x;
    default: return acc + x; /* Mean, Sum, LogSum; LogSumExp sums exp(x - max) */
    }
}

static double reduce_end(otl_op op, double acc, double count, double max) {
    switch (op) {
    case OP_REDUCEMEAN: return acc / count;
    case OP_REDUCEL2: return sqrt(acc);
    case OP_REDUCELOGSUM: return log(acc);
    case OP_REDUCELOGSUMEXP: return max + log(acc);
    default: return acc;
    }
}

/* The output element each input element reduces into. */
static int64_t *output_of(const otl_tinfo *x, const int64_t *ostride) {
    const int64_t count = otl_tinfo_count(x);
    int64_t *out = malloc(sizeof *out * ((size_t)count + 1)), idx[ONNXTL_MAX_RANK] = {0}, o = 0;
    for (int64_t i = 0; out && i < count; i++) {
        out[i] = o;
        otl_index_next(x->rank, x->dims, ostride, idx, &o);
    }
    return out;
}

/* Every Reduce op, in double.  LogSumExp subtracts each output's maximum
 * first, so that large inputs do not overflow. */
onnxtl_status *otl_cpu_reduce(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *y = OUT_T(a, 0);
    const otl_op op = a->n->op;
    bool mask[ONNXTL_MAX_RANK];
    OTL_TRY(otl_reduce_mask(a->n, a->t, mask));
    /* Stride of each input axis in the output, 0 on reduced axes. */
    int64_t ostride[ONNXTL_MAX_RANK], s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        ostride[i] = mask[i] ? 0 : s;
        if (!mask[i]) s *= x->dims[i];
    }
    const int64_t in_count = otl_tinfo_count(x), out_count = otl_tinfo_count(y);
    double *acc = malloc(sizeof *acc * ((size_t)out_count + 1)), *max = calloc((size_t)out_count + 1, sizeof *max);
    int64_t *at = output_of(x, ostride);
    onnxtl_status *st = acc && max && at ? NULL : otl_nomem();
    const float *X = a->in[0];
    for (int64_t i = 0; !st && i < out_count; i++) acc[i] = reduce_start(op), max[i] = -INFINITY;
    if (!st && op == OP_REDUCELOGSUMEXP) {
        for (int64_t i = 0; i < in_count; i++) max[at[i]] = X[i] > max[at[i]] ? X[i] : max[at[i]];
        for (int64_t i = 0; i < out_count; i++) max[i] = isfinite(max[i]) ? max[i] : 0;
        for (int64_t i = 0; i < in_count; i++) acc[at[i]] += exp(X[i] - max[at[i]]);
    } else if (!st) {
        for (int64_t i = 0; i < in_count; i++) acc[at[i]] = reduce_step(op, acc[at[i]], X[i]);
    }
    const double per = out_count ? (double)in_count / (double)out_count : 1;
    float *Y = a->out[0];
    for (int64_t i = 0; !st && i < out_count; i++) Y[i] = (float)reduce_end(op, acc[i], per, max[i]);
    free(acc);
    free(max);
    free(at);
    return st;
}
