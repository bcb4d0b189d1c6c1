#include "shape.h"

#include <math.h>
#include <string.h>

#include "checked.h"
#include "dtype.h"

int64_t otl_tinfo_count(const otl_tinfo *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dims[i];
    return n;
}

static onnxtl_status *bad(const char *msg) { return otl_error(ONNXTL_ERR_MODEL, "%s", msg); }

onnxtl_status *otl_norm_axis(int64_t axis, int r, int64_t *out) {
    *out = 0;
    if (axis < -r || axis >= r)
        return otl_error(ONNXTL_ERR_MODEL, "axis %lld is out of range for rank %d",
                         (long long)axis, r);
    *out = axis < 0 ? axis + r : axis;
    return NULL;
}

onnxtl_status *otl_tinfo_ints(const otl_tinfo *t, const char *what, int64_t *out, int max, int *n) {
    if (!t->data)
        return otl_error(ONNXTL_ERR_UNSUPPORTED,
                         "input '%s' must be a constant (computed values are not supported)", what);
    if (t->rank > 1 || (t->dtype != ONNXTL_INT64 && t->dtype != ONNXTL_INT32))
        return otl_error(ONNXTL_ERR_MODEL, "input '%s' must be a 1-D int64 tensor", what);
    int64_t count = otl_tinfo_count(t);
    if (count > max)
        return otl_error(ONNXTL_ERR_MODEL, "input '%s' has %lld entries, at most %d allowed", what,
                         (long long)count, max);
    for (int64_t i = 0; i < count; i++)
        out[i] = t->dtype == ONNXTL_INT64 ? ((const int64_t *)t->data)[i]
                                          : ((const int32_t *)t->data)[i];
    *n = (int)count;
    return NULL;
}

static void set_out(otl_tinfo *o, int dtype, int rank, const int64_t *dims) {
    o->dtype = dtype;
    o->rank = rank;
    if (rank) memmove(o->dims, dims, (size_t)rank * sizeof dims[0]);
    o->data = NULL;
}

static onnxtl_status *need_float(const otl_tinfo *x, const char *op) {
    if (x->dtype != ONNXTL_FLOAT)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s supports float32 tensors only, got %s", op,
                         otl_dtype_name(x->dtype));
    return NULL;
}

onnxtl_status *otl_broadcast_shape(const otl_tinfo *a, const otl_tinfo *b, otl_tinfo *out) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t dims[ONNXTL_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return otl_error(ONNXTL_ERR_MODEL, "shapes cannot broadcast (%lld vs %lld at axis %d)",
                             (long long)da, (long long)db, i);
        dims[i] = da == 1 ? db : da;
    }
    set_out(out, a->dtype, r, dims);
    return NULL;
}

static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/* Checks the window attributes' lengths against n spatial dims and resets w
 * to the identity window (ones in the leading dims of 1-D and 2-D ops). */
static onnxtl_status *window_reset(const otl_attrs *a, int n, otl_window *w) {
    if (n < 1 || n > OTL_MAX_SPATIAL)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%d spatial dimensions (1 to 3 supported)", n);
    if ((a->n_strides && a->n_strides != n) || (a->n_dilations && a->n_dilations != n) ||
        (a->n_pads && a->n_pads != 2 * n))
        return otl_error(ONNXTL_ERR_MODEL, "strides/dilations/pads do not match %d spatial dims", n);
    w->n = n;
    for (int i = 0; i < 3; i++) {
        w->in[i] = w->out[i] = w->kernel[i] = w->stride[i] = w->dilation[i] = 1;
        w->pad_begin[i] = w->pad_end[i] = 0;
    }
    return NULL;
}

/* Spatial axis i's kernel, stride, dilation and explicit pads, checked so
 * that the window arithmetic cannot overflow. */
typedef struct {
    int64_t k, s, d, pb, pe;
} window_axis;

static onnxtl_status *axis_of(const otl_attrs *a, int n, int i, const int64_t *kernel, const int64_t *in,
                              window_axis *x) {
    *x = (window_axis){kernel[i], a->n_strides ? a->strides[i] : 1, a->n_dilations ? a->dilations[i] : 1,
                       a->n_pads ? a->pads[i] : 0, a->n_pads ? a->pads[i + n] : 0};
    const int64_t big = INT64_MAX / 8;
    if (x->k < 1 || x->s < 1 || x->d < 1 || x->pb < 0 || x->pe < 0)
        return bad("kernel, strides and dilations must be positive and pads non-negative");
    if (x->k > big / x->d || x->s > big || x->pb > big || x->pe > big || in[i] > big / x->s)
        return bad("kernel, strides, dilations or pads are too large");
    return NULL;
}

static void set_axis(otl_window *w, int i, int64_t in, int64_t out, const window_axis *x) {
    w->in[i] = in, w->out[i] = out, w->kernel[i] = x->k, w->stride[i] = x->s, w->dilation[i] = x->d;
    w->pad_begin[i] = x->pb, w->pad_end[i] = x->pe;
}

onnxtl_status *otl_window_init(const otl_attrs *a, int n, const int64_t *in, const int64_t *kernel,
                               bool use_ceil, otl_window *w) {
    OTL_TRY(window_reset(a, n, w));
    for (int i = 0; i < n; i++) {
        window_axis x;
        OTL_TRY(axis_of(a, n, i, kernel, in, &x));
        int64_t span = x.d * (x.k - 1) + 1, out;
        if (a->auto_pad == AUTO_PAD_SAME_UPPER || a->auto_pad == AUTO_PAD_SAME_LOWER) {
            out = ceil_div(in[i], x.s);
            int64_t total = (out - 1) * x.s + span - in[i];
            if (total < 0) total = 0;
            x.pb = a->auto_pad == AUTO_PAD_SAME_UPPER ? total / 2 : total - total / 2;
            x.pe = total - x.pb;
        } else {
            if (a->auto_pad == AUTO_PAD_VALID) x.pb = x.pe = 0;
            int64_t room = in[i] + x.pb + x.pe - span;
            out = (use_ceil ? ceil_div(room, x.s) : (room >= 0 ? room / x.s : -1)) + 1;
            /* The last window must start inside the input or its leading pad. */
            if (use_ceil && out > 0 && (out - 1) * x.s >= in[i] + x.pb) out--;
        }
        if (out < 1)
            return otl_error(ONNXTL_ERR_MODEL,
                             "input size %lld is too small for kernel %lld (dilation %lld)",
                             (long long)in[i], (long long)x.k, (long long)x.d);
        set_axis(w, 3 - n + i, in[i], out, &x);
    }
    return NULL;
}

static void window_out_dims(const otl_window *w, int64_t n, int64_t c, int64_t *dims) {
    dims[0] = n;
    dims[1] = c;
    for (int i = 0; i < w->n; i++) dims[2 + i] = w->out[3 - w->n + i];
}

/* Conv's and ConvTranspose's weight: the input's rank, spatial dims that
 * kernel_shape (where given) repeats. */
static onnxtl_status *check_weight_window(const otl_node *nd, const otl_tinfo *x, const otl_tinfo *wt) {
    const char *op = otl_op_name(nd->op);
    const otl_attrs *a = &nd->attrs;
    if (x->rank < 3 || wt->rank != x->rank)
        return otl_error(ONNXTL_ERR_MODEL, "%s expects input and weight of the same rank >= 3", op);
    if (a->n_kernel && a->n_kernel != x->rank - 2)
        return otl_error(ONNXTL_ERR_MODEL, "%s kernel_shape has the wrong length", op);
    for (int i = 0; i < a->n_kernel; i++)
        if (a->kernel[i] != wt->dims[2 + i]) return otl_error(ONNXTL_ERR_MODEL, "%s kernel_shape disagrees with W", op);
    return NULL;
}

/* ConvInteger and MatMulInteger: 8-bit integer operands, an int32 result. */
static onnxtl_status *need_8bit(const otl_node *nd, const otl_tinfo *t) {
    for (int k = 0; k < nd->n_in; k++) {
        const otl_tinfo *x = &t[nd->in[k]];
        if (nd->in[k] >= 0 && x->dtype != ONNXTL_UINT8 && x->dtype != ONNXTL_INT8)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s on %s tensors is not supported (uint8 or int8)",
                             otl_op_name(nd->op), otl_dtype_name(x->dtype));
    }
    return NULL;
}

/* The result's type: int32 for the integer forms, else the input's. */
static int product_dtype(const otl_node *nd, const otl_tinfo *x) {
    return nd->op == OP_CONVINTEGER || nd->op == OP_MATMULINTEGER ? ONNXTL_INT32 : x->dtype;
}

static onnxtl_status *infer_conv(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]], *wt = &t[nd->in[1]];
    const bool integer = nd->op == OP_CONVINTEGER;
    OTL_TRY(integer ? need_8bit(nd, t) : need_float(x, "Conv"));
    const int n = x->rank - 2;
    OTL_TRY(check_weight_window(nd, x, wt));
    const otl_attrs *a = &nd->attrs;
    if (a->group < 1 || x->dims[1] != wt->dims[1] * a->group || wt->dims[0] % a->group)
        return otl_error(ONNXTL_ERR_MODEL,
                         "Conv channels do not match: input has %lld, weight expects %lld x group %lld",
                         (long long)x->dims[1], (long long)wt->dims[1], (long long)a->group);
    if (integer && ((nd->n_in > 2 && nd->in[2] >= 0 && otl_tinfo_count(&t[nd->in[2]]) != 1) ||
                    (nd->n_in > 3 && nd->in[3] >= 0 && otl_tinfo_count(&t[nd->in[3]]) != 1 &&
                     otl_tinfo_count(&t[nd->in[3]]) != wt->dims[0])))
        return bad("ConvInteger's zero points must be scalars (or one per output channel for w)");
    if (!integer && nd->n_in > 2 && nd->in[2] >= 0) {
        const otl_tinfo *b = &t[nd->in[2]];
        if (b->rank != 1 || b->dims[0] != wt->dims[0])
            return bad("Conv bias must be 1-D with one value per output channel");
    }
    otl_window w;
    OTL_TRY(otl_window_init(a, n, x->dims + 2, wt->dims + 2, false, &w));
    int64_t dims[ONNXTL_MAX_RANK];
    window_out_dims(&w, x->dims[0], wt->dims[0], dims);
    if (a->fused_add) {
        const otl_tinfo *skip = &t[nd->in[3]];
        if (skip->rank != x->rank || memcmp(skip->dims, dims, sizeof(int64_t) * (size_t)x->rank))
            return bad("the residual Add fused into this Conv adds tensors of different shapes");
    }
    set_out(&t[nd->out[0]], product_dtype(nd, x), x->rank, dims);
    return NULL;
}

/* ConvTranspose's geometry as the Conv whose adjoint it is: w->in holds the
 * ConvTranspose output's spatial dims and w->out its input's, so that input
 * cell o feeds output cell o * stride - pad_begin + k * dilation.  Pads come
 * from the attribute, or from output_shape or auto_pad, where the odd cell
 * of a total goes at the end for SAME_UPPER and at the start otherwise
 * (NOTSET included, as ONNX and ONNX Runtime do). */
onnxtl_status *otl_window_transpose(const otl_attrs *a, int n, const int64_t *in, const int64_t *kernel,
                                    otl_window *w) {
    OTL_TRY(window_reset(a, n, w));
    if ((a->n_output_padding && a->n_output_padding != n) || (a->n_output_shape && a->n_output_shape != n))
        return otl_error(ONNXTL_ERR_MODEL, "ConvTranspose's output_padding/output_shape do not match %d spatial dims", n);
    for (int i = 0; i < n; i++) {
        window_axis x;
        OTL_TRY(axis_of(a, n, i, kernel, in, &x));
        int64_t extra = a->n_output_padding ? a->output_padding[i] : 0, out;
        if (extra < 0 || extra > INT64_MAX / 8 || in[i] < 1) return bad("ConvTranspose's output_padding must be non-negative");
        int64_t full = x.s * (in[i] - 1) + extra + x.d * (x.k - 1) + 1;
        if (a->n_output_shape || a->auto_pad == AUTO_PAD_SAME_UPPER || a->auto_pad == AUTO_PAD_SAME_LOWER) {
            out = a->n_output_shape ? a->output_shape[i] : in[i] * x.s;
            int64_t total = full - out > 0 ? full - out : 0;
            x.pb = a->auto_pad == AUTO_PAD_SAME_UPPER ? total / 2 : total - total / 2;
            x.pe = total - x.pb;
        } else {
            if (a->auto_pad == AUTO_PAD_VALID) x.pb = x.pe = 0;
            out = full - x.pb - x.pe;
        }
        if (out < 1 || out > INT64_MAX / 8) return bad("ConvTranspose's pads or output_shape leave no output");
        set_axis(w, 3 - n + i, out, in[i], &x);
    }
    return NULL;
}

/* ConvTranspose: W is [C, M / group, kernel...] and Y has M channels. */
static onnxtl_status *infer_conv_transpose(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]], *wt = &t[nd->in[1]];
    const otl_attrs *a = &nd->attrs;
    OTL_TRY(need_float(x, "ConvTranspose"));
    const int n = x->rank - 2;
    OTL_TRY(check_weight_window(nd, x, wt));
    if (a->group < 1 || wt->dims[0] != x->dims[1] || x->dims[1] % a->group)
        return otl_error(ONNXTL_ERR_MODEL,
                         "ConvTranspose channels do not match: input has %lld, weight has %lld, group %lld",
                         (long long)x->dims[1], (long long)wt->dims[0], (long long)a->group);
    const int64_t m = wt->dims[1] * a->group;
    if (nd->n_in > 2 && nd->in[2] >= 0) {
        const otl_tinfo *b = &t[nd->in[2]];
        if (b->rank != 1 || b->dims[0] != m) return bad("ConvTranspose bias must be 1-D with one value per output channel");
    }
    otl_window w;
    OTL_TRY(otl_window_transpose(a, n, x->dims + 2, wt->dims + 2, &w));
    int64_t dims[ONNXTL_MAX_RANK] = {x->dims[0], m};
    for (int i = 0; i < n; i++) dims[2 + i] = w.in[3 - n + i];
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    return NULL;
}

static onnxtl_status *infer_pool(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    if (nd->op != OP_MAXPOOL || (x->dtype != ONNXTL_INT8 && x->dtype != ONNXTL_UINT8))
        OTL_TRY(need_float(x, otl_op_name(nd->op)));
    int n = x->rank - 2;
    if (nd->attrs.n_kernel != n)
        return bad("pooling needs kernel_shape with one entry per spatial dimension");
    if (nd->op == OP_LPPOOL && nd->attrs.lp < 1) return bad("LpPool's p must be at least 1");
    otl_window w;
    OTL_TRY(otl_window_init(&nd->attrs, n, x->dims + 2, nd->attrs.kernel, nd->attrs.ceil_mode, &w));
    int64_t dims[ONNXTL_MAX_RANK];
    window_out_dims(&w, x->dims[0], x->dims[1], dims);
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    if (nd->n_out > 1 && nd->out[1] >= 0) set_out(&t[nd->out[1]], ONNXTL_INT64, x->rank, dims);
    return NULL;
}

static onnxtl_status *infer_global_pool(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, otl_op_name(nd->op)));
    if (x->rank < 3) return bad("global pooling needs an N x C x spatial input");
    int64_t dims[ONNXTL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) dims[i] = i < 2 ? x->dims[i] : 1;
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    return NULL;
}

static onnxtl_status *infer_same(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    set_out(&t[nd->out[0]], x->dtype, x->rank, x->dims);
    return NULL;
}

static onnxtl_status *infer_float_same(const otl_node *nd, otl_tinfo *t) {
    OTL_TRY(need_float(&t[nd->in[0]], otl_op_name(nd->op)));
    return infer_same(nd, t);
}

static onnxtl_status *infer_batchnorm(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, "BatchNormalization"));
    /* Before opset 14 the extra outputs were training's; onnxtl computes them in training mode only. */
    for (int i = nd->attrs.training_mode ? 3 : 1; i < nd->n_out; i++)
        if (nd->out[i] >= 0)
            return otl_error(ONNXTL_ERR_UNSUPPORTED, "BatchNormalization's saved mean and variance outputs "
                                                     "are not supported (only running_mean and running_var)");
    if (x->rank < 2) return bad("BatchNormalization needs an N x C x ... input");
    for (int i = 1; i < 5; i++) {
        const otl_tinfo *p = &t[nd->in[i]];
        if (p->rank != 1 || p->dims[0] != x->dims[1] || p->dtype != ONNXTL_FLOAT)
            return bad("BatchNormalization parameters must be 1-D float32 with one value per channel");
    }
    for (int i = 1; i < nd->n_out; i++)
        if (nd->out[i] >= 0) set_out(&t[nd->out[i]], ONNXTL_FLOAT, 1, &x->dims[1]);
    return infer_same(nd, t);
}

static onnxtl_status *infer_lrn(const otl_node *nd, otl_tinfo *t) {
    if (nd->attrs.lrn_size < 1) return bad("LRN needs a size of at least 1");
    if (t[nd->in[0]].rank < 3) return bad("LRN expects an input of rank 3 or more (N, C, ...)");
    return infer_float_same(nd, t);
}

/* Clip of any type a double holds exactly. */
static onnxtl_status *infer_clip(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    if (!otl_dtype_size(x->dtype) || x->dtype == ONNXTL_BOOL || x->dtype == ONNXTL_INT64 ||
        x->dtype == ONNXTL_UINT64 || otl_dtype_is_narrow(x->dtype))
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "Clip on %s tensors is not supported", otl_dtype_name(x->dtype));
    for (int i = 1; i < nd->n_in; i++)
        if (nd->in[i] >= 0 && (otl_tinfo_count(&t[nd->in[i]]) != 1 || t[nd->in[i]].dtype != x->dtype))
            return bad("Clip's min and max must be scalars of its input's type");
    return infer_same(nd, t);
}

/* Before opset 7, Add, Sub, Mul, Div, Pow, the comparisons and the logic ops
 * broadcast B onto A only with broadcast=1, aligned at axis or with A's last
 * dims.  Numpy's rules, which onnxtl applies, give the same result except
 * where axis puts B before A's last dims (Caffe2's bias along channels):
 * that is refused rather than computed otherwise. */
static onnxtl_status *check_legacy_broadcast(const otl_node *nd, const otl_tinfo *t) {
    if (nd->opset >= 7 || nd->n_in != 2 || !nd->attrs.broadcast || !nd->attrs.has_axis) return NULL;
    const otl_tinfo *a = &t[nd->in[0]], *b = &t[nd->in[1]];
    if (nd->attrs.axis == a->rank - b->rank) return NULL;
    return otl_error(ONNXTL_ERR_UNSUPPORTED,
                     "%s with broadcast=1 along axis %lld (B of rank %d aligned before A's last dims) is not "
                     "supported; convert the model to opset 7 or newer", otl_op_name(nd->op),
                     (long long)nd->attrs.axis, b->rank);
}

static onnxtl_status *infer_binary(const otl_node *nd, otl_tinfo *t) {
    OTL_TRY(check_legacy_broadcast(nd, t));
    otl_tinfo acc = t[nd->in[0]];
    for (int i = 1; i < nd->n_in; i++) {
        const otl_tinfo *b = &t[nd->in[i]];
        if (b->dtype != acc.dtype)
            return otl_error(ONNXTL_ERR_MODEL, "%s inputs differ in type (%s and %s)",
                             otl_op_name(nd->op), otl_dtype_name(acc.dtype), otl_dtype_name(b->dtype));
        OTL_TRY(otl_broadcast_shape(&acc, b, &acc));
    }
    if (acc.dtype == ONNXTL_BOOL || !otl_dtype_size(acc.dtype) || acc.dtype == ONNXTL_FLOAT16 ||
        acc.dtype == ONNXTL_BFLOAT16 || otl_dtype_is_narrow(acc.dtype))
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s on %s tensors is not supported",
                         otl_op_name(nd->op), otl_dtype_name(acc.dtype));
    set_out(&t[nd->out[0]], acc.dtype, acc.rank, acc.dims);
    return NULL;
}

static onnxtl_status *infer_gemm(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *a = &t[nd->in[0]], *b = &t[nd->in[1]];
    OTL_TRY(need_float(a, "Gemm"));
    if (a->rank != 2 || b->rank != 2) return bad("Gemm needs 2-D A and B");
    int64_t m = nd->attrs.trans_a ? a->dims[1] : a->dims[0];
    int64_t ka = nd->attrs.trans_a ? a->dims[0] : a->dims[1];
    int64_t kb = nd->attrs.trans_b ? b->dims[1] : b->dims[0];
    int64_t n = nd->attrs.trans_b ? b->dims[0] : b->dims[1];
    if (ka != kb)
        return otl_error(ONNXTL_ERR_MODEL, "Gemm inner dimensions differ (%lld and %lld)",
                         (long long)ka, (long long)kb);
    int64_t dims[2] = {m, n};
    otl_tinfo y = {.dtype = a->dtype, .rank = 2, .dims = {m, n}};
    if (nd->n_in > 2 && nd->in[2] >= 0) {
        otl_tinfo bc;
        OTL_TRY(otl_broadcast_shape(&y, &t[nd->in[2]], &bc));
        if (bc.rank != 2 || bc.dims[0] != m || bc.dims[1] != n)
            return bad("Gemm's C does not broadcast to the output shape");
    }
    set_out(&t[nd->out[0]], a->dtype, 2, dims);
    return NULL;
}

static onnxtl_status *infer_matmul(const otl_node *nd, otl_tinfo *t) {
    otl_tinfo a = t[nd->in[0]], b = t[nd->in[1]];
    OTL_TRY(nd->op == OP_MATMULINTEGER ? need_8bit(nd, t) : need_float(&a, "MatMul"));
    if (a.rank < 1 || b.rank < 1) return bad("MatMul inputs must have rank >= 1");
    bool a_vec = a.rank == 1, b_vec = b.rank == 1;
    if (a_vec) { a.rank = 2; a.dims[1] = a.dims[0]; a.dims[0] = 1; }
    if (b_vec) { b.rank = 2; b.dims[1] = 1; }
    if (a.dims[a.rank - 1] != b.dims[b.rank - 2])
        return otl_error(ONNXTL_ERR_MODEL, "MatMul inner dimensions differ (%lld and %lld)",
                         (long long)a.dims[a.rank - 1], (long long)b.dims[b.rank - 2]);
    otl_tinfo ba = a, bb = b, batch;
    ba.rank -= 2;
    bb.rank -= 2;
    OTL_TRY(otl_broadcast_shape(&ba, &bb, &batch));
    int64_t dims[ONNXTL_MAX_RANK];
    int r = batch.rank;
    memcpy(dims, batch.dims, sizeof(int64_t) * (size_t)r);
    if (!a_vec) dims[r++] = a.dims[a.rank - 2];
    if (!b_vec) dims[r++] = b.dims[b.rank - 1];
    if (nd->op == OP_MATMULINTEGER &&
        ((nd->n_in > 2 && nd->in[2] >= 0 && otl_tinfo_count(&t[nd->in[2]]) != 1 &&
          otl_tinfo_count(&t[nd->in[2]]) != a.dims[a.rank - 2]) ||
         (nd->n_in > 3 && nd->in[3] >= 0 && otl_tinfo_count(&t[nd->in[3]]) != 1 &&
          otl_tinfo_count(&t[nd->in[3]]) != b.dims[b.rank - 1])))
        return bad("MatMulInteger's zero points must be scalars, or one per row of A or column of B");
    set_out(&t[nd->out[0]], product_dtype(nd, &a), r, dims);
    return NULL;
}

static onnxtl_status *infer_softmax(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, otl_op_name(nd->op)));
    int64_t axis;
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, &axis));
    return infer_same(nd, t);
}

/* Axes of a reduction/squeeze, from the attribute or (newer opsets) input 1. */
static onnxtl_status *node_axes(const otl_node *nd, const otl_tinfo *t, int64_t *axes, int *n,
                                bool *given) {
    if (nd->attrs.n_axes >= 0) {
        *n = nd->attrs.n_axes;
        memcpy(axes, nd->attrs.axes, sizeof(int64_t) * (size_t)*n);
        *given = true;
        return NULL;
    }
    *given = nd->n_in > 1 && nd->in[1] >= 0;
    *n = 0;
    return *given ? otl_tinfo_ints(&t[nd->in[1]], "axes", axes, ONNXTL_MAX_RANK, n) : NULL;
}

static onnxtl_status *axes_mask(const int64_t *axes, int n, int rank, bool *mask) {
    memset(mask, 0, sizeof(bool) * ONNXTL_MAX_RANK);
    for (int i = 0; i < n; i++) {
        int64_t ax;
        OTL_TRY(otl_norm_axis(axes[i], rank, &ax));
        if (mask[ax]) return bad("an axis is repeated");
        mask[ax] = true;
    }
    return NULL;
}

onnxtl_status *otl_reduce_mask(const otl_node *nd, const otl_tinfo *t, bool *mask) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axes[ONNXTL_MAX_RANK] = {0};
    int n;
    bool given;
    OTL_TRY(node_axes(nd, t, axes, &n, &given));
    OTL_TRY(axes_mask(axes, n, x->rank, mask));
    if (n == 0 && !nd->attrs.noop_with_empty_axes)
        for (int i = 0; i < x->rank; i++) mask[i] = true;
    return NULL;
}

static onnxtl_status *infer_reduce(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, otl_op_name(nd->op)));
    bool mask[ONNXTL_MAX_RANK];
    OTL_TRY(otl_reduce_mask(nd, t, mask));
    int64_t dims[ONNXTL_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!mask[i]) dims[r++] = x->dims[i];
        else if (nd->attrs.keepdims) dims[r++] = 1;
    }
    set_out(&t[nd->out[0]], x->dtype, r, dims);
    return NULL;
}

static onnxtl_status *infer_flatten(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axis = nd->attrs.axis;
    if (axis < -x->rank || axis > x->rank) return bad("Flatten axis is out of range");
    if (axis < 0) axis += x->rank;
    int64_t dims[2] = {1, 1};
    for (int i = 0; i < x->rank; i++) dims[i >= axis] *= x->dims[i];
    set_out(&t[nd->out[0]], x->dtype, 2, dims);
    return NULL;
}

static onnxtl_status *infer_reshape(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t dims[ONNXTL_MAX_RANK];
    int r, infer_at = -1;
    OTL_TRY(otl_tinfo_ints(&t[nd->in[1]], "shape", dims, ONNXTL_MAX_RANK, &r));
    int64_t known = 1;
    for (int i = 0; i < r; i++) {
        if (dims[i] == 0 && !nd->attrs.allowzero) {
            if (i >= x->rank) return bad("Reshape copies a dimension the input lacks");
            dims[i] = x->dims[i];
        }
        if (dims[i] == -1) {
            if (infer_at >= 0) return bad("Reshape has more than one -1");
            infer_at = i;
        } else if (dims[i] < 0) {
            return bad("Reshape has a negative dimension");
        } else if (!otl_mul_i64(known, dims[i], &known)) {
            return bad("Reshape dimensions overflow");
        }
    }
    int64_t count = otl_tinfo_count(x);
    if (infer_at >= 0) {
        if (known == 0 || count % known) return bad("Reshape cannot infer the -1 dimension");
        dims[infer_at] = count / known;
    } else if (known != count) {
        return otl_error(ONNXTL_ERR_MODEL, "Reshape changes the element count (%lld to %lld)",
                         (long long)count, (long long)known);
    }
    set_out(&t[nd->out[0]], x->dtype, r, dims);
    return NULL;
}

static onnxtl_status *infer_squeeze(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axes[ONNXTL_MAX_RANK], dims[ONNXTL_MAX_RANK];
    int n, r = 0;
    bool given, mask[ONNXTL_MAX_RANK];
    OTL_TRY(node_axes(nd, t, axes, &n, &given));
    OTL_TRY(axes_mask(axes, n, x->rank, mask));
    for (int i = 0; i < x->rank; i++) {
        bool drop = n ? mask[i] : x->dims[i] == 1;
        if (drop && x->dims[i] != 1) return bad("Squeeze of a dimension that is not 1");
        if (!drop) dims[r++] = x->dims[i];
    }
    set_out(&t[nd->out[0]], x->dtype, r, dims);
    return NULL;
}

static onnxtl_status *infer_unsqueeze(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axes[ONNXTL_MAX_RANK], dims[ONNXTL_MAX_RANK];
    int n;
    bool given, mask[ONNXTL_MAX_RANK];
    OTL_TRY(node_axes(nd, t, axes, &n, &given));
    int r = x->rank + n;
    if (!given || r > ONNXTL_MAX_RANK) return bad("Unsqueeze needs axes and a result rank <= 8");
    OTL_TRY(axes_mask(axes, n, r, mask));
    for (int i = 0, j = 0; i < r; i++) dims[i] = mask[i] ? 1 : x->dims[j++];
    set_out(&t[nd->out[0]], x->dtype, r, dims);
    return NULL;
}

static onnxtl_status *infer_dropout(const otl_node *nd, otl_tinfo *t) {
    OTL_TRY(infer_same(nd, t));
    if (nd->n_out > 1 && nd->out[1] >= 0) {
        const otl_tinfo *x = &t[nd->in[0]];
        set_out(&t[nd->out[1]], ONNXTL_BOOL, x->rank, x->dims);
    }
    return NULL;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The [start, end) range of dims that Shape reports. */
void otl_shape_range(const otl_attrs *a, int rank, int64_t *start, int64_t *end) {
    int64_t s = a->shape_start, e = a->has_shape_end ? a->shape_end : rank;
    if (s < 0) s += rank;
    if (e < 0) e += rank;
    *start = clamp64(s, 0, rank);
    *end = clamp64(e, 0, rank);
    if (*end < *start) *end = *start;
}

static onnxtl_status *infer_shape(const otl_node *nd, otl_tinfo *t) {
    int64_t s, e, len;
    otl_shape_range(&nd->attrs, t[nd->in[0]].rank, &s, &e);
    len = e - s;
    set_out(&t[nd->out[0]], ONNXTL_INT64, 1, &len);
    return NULL;
}

static bool is_index_type(int dtype) { return dtype == ONNXTL_INT64 || dtype == ONNXTL_INT32; }

static onnxtl_status *infer_gather(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]], *idx = &t[nd->in[1]];
    int64_t axis, dims[ONNXTL_MAX_RANK];
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, &axis));
    if (!is_index_type(idx->dtype)) return bad("Gather indices must be int32 or int64");
    int r = x->rank - 1 + idx->rank;
    if (r > ONNXTL_MAX_RANK) return bad("Gather result rank exceeds 8");
    int k = 0;
    for (int i = 0; i < axis; i++) dims[k++] = x->dims[i];
    for (int i = 0; i < idx->rank; i++) dims[k++] = idx->dims[i];
    for (int i = (int)axis + 1; i < x->rank; i++) dims[k++] = x->dims[i];
    set_out(&t[nd->out[0]], x->dtype, r, dims);
    return NULL;
}

/* GatherElements: the output has the indices' shape. */
static onnxtl_status *infer_gather_elements(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]], *idx = &t[nd->in[1]];
    int64_t axis;
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, &axis));
    if (!is_index_type(idx->dtype) || idx->rank != x->rank)
        return bad("GatherElements needs int32 or int64 indices of its data's rank");
    for (int i = 0; i < x->rank; i++)
        if (i != axis && idx->dims[i] > x->dims[i]) return bad("GatherElements' indices exceed its data outside the axis");
    if (!otl_dtype_size(x->dtype)) return bad("GatherElements' data has an unsupported type");
    set_out(&t[nd->out[0]], x->dtype, idx->rank, idx->dims);
    return NULL;
}

/* GatherND: indices [batch..., q..., k] pick slices data[batch..., i_1..i_k, ...]. */
static onnxtl_status *infer_gather_nd(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]], *idx = &t[nd->in[1]];
    const int64_t b = nd->attrs.batch_dims;
    if (idx->dtype != ONNXTL_INT64 || idx->rank < 1 || x->rank < 1) return bad("GatherND needs int64 indices");
    const int64_t k = idx->dims[idx->rank - 1];
    if (b < 0 || b >= idx->rank || b >= x->rank || k < 1 || k > x->rank - b)
        return bad("GatherND's batch_dims and index length do not fit its data");
    for (int i = 0; i < b; i++)
        if (idx->dims[i] != x->dims[i]) return bad("GatherND's batch dimensions differ between data and indices");
    int64_t dims[ONNXTL_MAX_RANK];
    int r = 0;
    for (int i = 0; i < idx->rank - 1; i++) dims[r++] = idx->dims[i];
    for (int i = (int)(b + k); i < x->rank; i++) {
        if (r == ONNXTL_MAX_RANK) return bad("GatherND result rank exceeds 8");
        dims[r++] = x->dims[i];
    }
    if (!otl_dtype_size(x->dtype)) return bad("GatherND's data has an unsupported type");
    set_out(&t[nd->out[0]], x->dtype, r, dims);
    return NULL;
}

static onnxtl_status *infer_concat(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axis, dims[ONNXTL_MAX_RANK];
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, &axis));
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    for (int i = 1; i < nd->n_in; i++) {
        const otl_tinfo *y = &t[nd->in[i]];
        if (y->rank != x->rank || y->dtype != x->dtype)
            return bad("Concat inputs differ in rank or type");
        for (int d = 0; d < x->rank; d++)
            if (d != axis && y->dims[d] != x->dims[d])
                return bad("Concat inputs differ outside the concatenation axis");
        dims[axis] += y->dims[axis];
    }
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    return NULL;
}

static onnxtl_status *infer_transpose(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t dims[ONNXTL_MAX_RANK];
    bool seen[ONNXTL_MAX_RANK] = {0};
    if (nd->attrs.n_perm >= 0 && nd->attrs.n_perm != x->rank)
        return bad("Transpose perm has the wrong length");
    for (int i = 0; i < x->rank; i++) {
        int64_t p = nd->attrs.n_perm >= 0 ? nd->attrs.perm[i] : x->rank - 1 - i;
        if (p < 0 || p >= x->rank || seen[p]) return bad("Transpose perm is not a permutation");
        seen[p] = true;
        dims[i] = x->dims[p];
    }
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    return NULL;
}

/* Pad amounts per axis (begin then end, 2*rank entries) from attributes or inputs. */
onnxtl_status *otl_pad_amounts(const otl_node *nd, const otl_tinfo *t, int rank, int64_t *pads) {
    int64_t raw[2 * ONNXTL_MAX_RANK], axes[ONNXTL_MAX_RANK];
    int n, n_axes = rank;
    if (nd->opset < 11) {
        n = nd->attrs.n_pad_amounts;
        memcpy(raw, nd->attrs.pad_amounts, sizeof(int64_t) * (size_t)n);
    } else {
        OTL_TRY(otl_tinfo_ints(&t[nd->in[1]], "pads", raw, 2 * ONNXTL_MAX_RANK, &n));
    }
    if (nd->n_in > 3 && nd->in[3] >= 0) {
        OTL_TRY(otl_tinfo_ints(&t[nd->in[3]], "axes", axes, ONNXTL_MAX_RANK, &n_axes));
    } else {
        for (int i = 0; i < rank; i++) axes[i] = i;
    }
    if (n != 2 * n_axes) return bad("Pad needs two amounts per padded axis");
    memset(pads, 0, sizeof(int64_t) * 2 * (size_t)rank);
    for (int i = 0; i < n_axes; i++) {
        int64_t ax;
        OTL_TRY(otl_norm_axis(axes[i], rank, &ax));
        pads[ax] = raw[i];
        pads[rank + ax] = raw[n_axes + i];
    }
    return NULL;
}

static onnxtl_status *infer_pad(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t pads[2 * ONNXTL_MAX_RANK], dims[ONNXTL_MAX_RANK];
    OTL_TRY(otl_pad_amounts(nd, t, x->rank, pads));
    for (int i = 0; i < x->rank; i++) {
        dims[i] = x->dims[i] + pads[i] + pads[x->rank + i];
        if (dims[i] < 0) return bad("Pad removes more than the dimension holds");
        const bool grows = pads[i] > 0 || pads[x->rank + i] > 0;
        if (grows && nd->attrs.pad_mode && x->dims[i] == 0) return bad("Pad cannot reflect, repeat or wrap an empty axis");
        if (grows && nd->attrs.pad_mode == 1 && (pads[i] >= x->dims[i] || pads[x->rank + i] >= x->dims[i]))
            return bad("Pad in reflect mode needs pads smaller than the axis");
    }
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    return NULL;
}

static bool castable(int dtype) {
    return otl_dtype_size(dtype) != 0;
}

/* Cast to its attribute's type, CastLike to its second input's. */
static onnxtl_status *infer_cast(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    const int to = nd->op == OP_CASTLIKE ? t[nd->in[1]].dtype : (int)nd->attrs.to;
    if (!castable(x->dtype) || !castable(to))
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s from %s to %s is not supported", otl_op_name(nd->op),
                         otl_dtype_name(x->dtype), otl_dtype_name(to));
    set_out(&t[nd->out[0]], to, x->rank, x->dims);
    return NULL;
}

/* Broadcast shape of every input, which must share one type unless mixed is set. */
static onnxtl_status *broadcast_all(const otl_node *nd, const otl_tinfo *t, int first, bool mixed, otl_tinfo *acc) {
    OTL_TRY(check_legacy_broadcast(nd, t));
    *acc = t[nd->in[first]];
    for (int i = first + 1; i < nd->n_in; i++) {
        const otl_tinfo *b = &t[nd->in[i]];
        if (!mixed && b->dtype != acc->dtype)
            return otl_error(ONNXTL_ERR_MODEL, "%s inputs differ in type (%s and %s)", otl_op_name(nd->op),
                             otl_dtype_name(acc->dtype), otl_dtype_name(b->dtype));
        OTL_TRY(otl_broadcast_shape(acc, b, acc));
    }
    return NULL;
}

static onnxtl_status *need_numeric(const otl_tinfo *x, const char *op) {
    if (!otl_dtype_size(x->dtype) || x->dtype == ONNXTL_BOOL || otl_dtype_is_narrow(x->dtype))
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s on %s tensors is not supported", op, otl_dtype_name(x->dtype));
    return NULL;
}

/* Max, Min, Mean, Mod: numeric inputs of one type, broadcast. */
static onnxtl_status *infer_elementwise(const otl_node *nd, otl_tinfo *t) {
    otl_tinfo acc;
    OTL_TRY(broadcast_all(nd, t, 0, false, &acc));
    OTL_TRY(need_numeric(&acc, otl_op_name(nd->op)));
    if (nd->op == OP_MEAN && !otl_dtype_is_float(acc.dtype)) return bad("Mean takes floating-point tensors");
    set_out(&t[nd->out[0]], acc.dtype, acc.rank, acc.dims);
    return NULL;
}

/* Equal, Less, Greater...: numeric (or bool, for Equal) inputs of one type; bool out. */
static onnxtl_status *infer_compare(const otl_node *nd, otl_tinfo *t) {
    otl_tinfo acc;
    OTL_TRY(broadcast_all(nd, t, 0, false, &acc));
    if (acc.dtype != ONNXTL_BOOL || nd->op != OP_EQUAL) OTL_TRY(need_numeric(&acc, otl_op_name(nd->op)));
    set_out(&t[nd->out[0]], ONNXTL_BOOL, acc.rank, acc.dims);
    return NULL;
}

/* And, Or, Xor, Not: bool in, bool out. */
static onnxtl_status *infer_logic(const otl_node *nd, otl_tinfo *t) {
    otl_tinfo acc;
    OTL_TRY(broadcast_all(nd, t, 0, false, &acc));
    if (acc.dtype != ONNXTL_BOOL) return otl_error(ONNXTL_ERR_MODEL, "%s takes bool tensors", otl_op_name(nd->op));
    set_out(&t[nd->out[0]], ONNXTL_BOOL, acc.rank, acc.dims);
    return NULL;
}

/* Where(condition, X, Y): X's type, the three shapes broadcast. */
static onnxtl_status *infer_where(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *c = &t[nd->in[0]], *x = &t[nd->in[1]], *y = &t[nd->in[2]];
    if (c->dtype != ONNXTL_BOOL) return bad("Where's condition must be a bool tensor");
    if (x->dtype != y->dtype || !otl_dtype_size(x->dtype)) return bad("Where's X and Y must share one type");
    otl_tinfo acc;
    OTL_TRY(broadcast_all(nd, t, 0, true, &acc));
    set_out(&t[nd->out[0]], x->dtype, acc.rank, acc.dims);
    return NULL;
}

/* Pow(X, Y): X's type; Y may be of another numeric type. */
static onnxtl_status *infer_pow(const otl_node *nd, otl_tinfo *t) {
    otl_tinfo acc;
    OTL_TRY(need_numeric(&t[nd->in[0]], "Pow"));
    OTL_TRY(need_numeric(&t[nd->in[1]], "Pow"));
    OTL_TRY(broadcast_all(nd, t, 0, true, &acc));
    set_out(&t[nd->out[0]], t[nd->in[0]].dtype, acc.rank, acc.dims);
    return NULL;
}

/* Whether from broadcasts to to's shape, one way (numpy's rules). */
static bool broadcasts_to(const otl_tinfo *from, const otl_tinfo *to) {
    if (from->rank > to->rank) return false;
    for (int i = 0; i < from->rank; i++) {
        const int64_t d = from->dims[from->rank - 1 - i];
        if (d != 1 && d != to->dims[to->rank - 1 - i]) return false;
    }
    return true;
}

/* Normalised over the axes from axis on; Scale and B broadcast to them. */
static onnxtl_status *infer_layernorm(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, "LayerNormalization"));
    int64_t axis;
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, &axis));
    for (int k = 1; k < nd->n_out; k++)
        if (nd->out[k] >= 0) return otl_error(ONNXTL_ERR_UNSUPPORTED, "LayerNormalization's Mean and InvStdDev outputs are not supported");
    for (int k = 1; k < nd->n_in; k++) {
        if (nd->in[k] < 0) continue;
        const otl_tinfo *p = &t[nd->in[k]];
        otl_tinfo inner = {.dtype = x->dtype, .rank = x->rank - (int)axis};
        memcpy(inner.dims, x->dims + axis, sizeof(int64_t) * (size_t)inner.rank);
        OTL_TRY(need_float(p, "LayerNormalization"));
        if (!broadcasts_to(p, &inner)) return bad("LayerNormalization's Scale and B must broadcast to the normalised axes");
    }
    set_out(&t[nd->out[0]], x->dtype, x->rank, x->dims);
    return NULL;
}

onnxtl_status *otl_slice_plan(const otl_node *nd, const otl_tinfo *t, int64_t *start, int64_t *step, int64_t *dims) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t starts[ONNXTL_MAX_RANK], ends[ONNXTL_MAX_RANK], axes[ONNXTL_MAX_RANK], steps[ONNXTL_MAX_RANK];
    int n, n_ends, n_axes = -1, n_steps = -1;
    if (nd->opset < 10) {
        n = nd->attrs.n_starts, n_ends = nd->attrs.n_ends, n_axes = nd->attrs.n_axes;
        memcpy(starts, nd->attrs.starts, sizeof starts), memcpy(ends, nd->attrs.ends, sizeof ends);
        memcpy(axes, nd->attrs.axes, sizeof axes);
    } else {
        OTL_TRY(otl_tinfo_ints(&t[nd->in[1]], "starts", starts, ONNXTL_MAX_RANK, &n));
        OTL_TRY(otl_tinfo_ints(&t[nd->in[2]], "ends", ends, ONNXTL_MAX_RANK, &n_ends));
        if (nd->n_in > 3 && nd->in[3] >= 0) OTL_TRY(otl_tinfo_ints(&t[nd->in[3]], "axes", axes, ONNXTL_MAX_RANK, &n_axes));
        if (nd->n_in > 4 && nd->in[4] >= 0) OTL_TRY(otl_tinfo_ints(&t[nd->in[4]], "steps", steps, ONNXTL_MAX_RANK, &n_steps));
    }
    if (n != n_ends || (n_axes >= 0 && n_axes != n) || (n_steps >= 0 && n_steps != n))
        return bad("Slice's starts, ends, axes and steps differ in length");
    bool seen[ONNXTL_MAX_RANK] = {0};
    for (int i = 0; i < x->rank; i++) start[i] = 0, step[i] = 1, dims[i] = x->dims[i];
    for (int i = 0; i < n; i++) {
        int64_t ax, s = n_steps >= 0 ? steps[i] : 1, d;
        OTL_TRY(otl_norm_axis(n_axes >= 0 ? axes[i] : i, x->rank, &ax));
        if (seen[ax]) return bad("Slice names an axis twice");
        if (s == 0) return bad("Slice's steps must not be 0");
        seen[ax] = true;
        d = x->dims[ax];
        int64_t b = starts[i] < 0 ? starts[i] + d : starts[i], e = ends[i] < 0 && ends[i] > INT64_MIN ? ends[i] + d : ends[i];
        /* clamp as ONNX does: [0, d] going forward, [-1, d - 1] going back */
        if (s > 0) b = b < 0 ? 0 : b > d ? d : b, e = e < 0 ? 0 : e > d ? d : e;
        else b = b < -1 ? -1 : b > d - 1 ? d - 1 : b, e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
        int64_t len = s > 0 ? (e - b + s - 1) / s : (b - e + (-s) - 1) / (-s);
        start[ax] = b, step[ax] = s, dims[ax] = len > 0 ? len : 0;
    }
    return NULL;
}

static onnxtl_status *infer_slice(const otl_node *nd, otl_tinfo *t) {
    int64_t start[ONNXTL_MAX_RANK], step[ONNXTL_MAX_RANK], dims[ONNXTL_MAX_RANK];
    OTL_TRY(otl_slice_plan(nd, t, start, step, dims));
    set_out(&t[nd->out[0]], t[nd->in[0]].dtype, t[nd->in[0]].rank, dims);
    return NULL;
}

/* Expand(X, shape): X broadcast with the shape, as numpy does both ways. */
static onnxtl_status *infer_expand(const otl_node *nd, otl_tinfo *t) {
    otl_tinfo shape = {.dtype = t[nd->in[0]].dtype}, out;
    OTL_TRY(otl_tinfo_ints(&t[nd->in[1]], "shape", shape.dims, ONNXTL_MAX_RANK, &shape.rank));
    OTL_TRY(otl_broadcast_shape(&t[nd->in[0]], &shape, &out));
    set_out(&t[nd->out[0]], t[nd->in[0]].dtype, out.rank, out.dims);
    return NULL;
}

static onnxtl_status *infer_constant_of_shape(const otl_node *nd, otl_tinfo *t) {
    int64_t dims[ONNXTL_MAX_RANK];
    int r;
    OTL_TRY(otl_tinfo_ints(&t[nd->in[0]], "shape", dims, ONNXTL_MAX_RANK, &r));
    for (int i = 0; i < r; i++)
        if (dims[i] < 0) return bad("ConstantOfShape's shape has a negative dimension");
    set_out(&t[nd->out[0]], nd->attrs.fill.dtype ? nd->attrs.fill.dtype : ONNXTL_FLOAT, r, dims);
    return NULL;
}

/* Range(start, limit, delta): max(ceil((limit - start) / delta), 0) values. */
static onnxtl_status *infer_range(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *s = &t[nd->in[0]], *l = &t[nd->in[1]], *d = &t[nd->in[2]];
    if (!s->data || !l->data || !d->data) return otl_error(ONNXTL_ERR_UNSUPPORTED, "Range needs constant inputs");
    if (s->dtype != l->dtype || s->dtype != d->dtype || otl_tinfo_count(s) != 1 || otl_tinfo_count(l) != 1 ||
        otl_tinfo_count(d) != 1)
        return bad("Range takes three scalars of one type");
    OTL_TRY(need_numeric(s, "Range"));
    const double start = otl_dtype_load(s->data, s->dtype, 0), limit = otl_dtype_load(l->data, l->dtype, 0),
                 delta = otl_dtype_load(d->data, d->dtype, 0);
    if (delta == 0) return bad("Range's delta must not be 0");
    double n = ceil((limit - start) / delta);
    if (n > (double)INT32_MAX) return bad("Range would make too many values");
    int64_t dims[1] = {n > 0 ? (int64_t)n : 0};
    set_out(&t[nd->out[0]], s->dtype, 1, dims);
    return NULL;
}

/* ScatterND(data, indices, updates): data's shape and type. */
static onnxtl_status *infer_scatternd(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]], *idx = &t[nd->in[1]], *u = &t[nd->in[2]];
    if (idx->dtype != ONNXTL_INT64 || idx->rank < 1) return bad("ScatterND's indices must be an int64 tensor");
    const int64_t k = idx->dims[idx->rank - 1];
    if (k < 1 || k > x->rank || u->dtype != x->dtype || u->rank != idx->rank - 1 + x->rank - (int)k)
        return bad("ScatterND's indices and updates do not fit its data");
    for (int i = 0; i < idx->rank - 1; i++)
        if (u->dims[i] != idx->dims[i]) return bad("ScatterND's updates do not match its indices");
    for (int i = (int)k; i < x->rank; i++)
        if (u->dims[idx->rank - 1 + i - (int)k] != x->dims[i]) return bad("ScatterND's updates do not match its data");
    if (!otl_dtype_size(x->dtype)) return bad("ScatterND's data has an unsupported type");
    set_out(&t[nd->out[0]], x->dtype, x->rank, x->dims);
    return NULL;
}

static int letter_index(char c) { return c >= 'a' && c <= 'z' ? c - 'a' : c >= 'A' && c <= 'Z' ? 26 + c - 'A' : -1; }

/* One term of letters into axes; each letter's extent checked or set. */
static onnxtl_status *einsum_term(const char *p, size_t len, const otl_tinfo *x, otl_einsum *e, int k) {
    if ((int)len != x->rank) return bad("an Einsum term's letters do not match its input's rank");
    for (size_t i = 0; i < len; i++) {
        int l = letter_index(p[i]);
        if (l < 0) return otl_error(ONNXTL_ERR_UNSUPPORTED, "Einsum equation '%.*s' is not supported (letters only)", (int)len, p);
        for (size_t j = 0; j < i; j++)
            if (p[j] == p[i]) return otl_error(ONNXTL_ERR_UNSUPPORTED, "Einsum with a letter repeated in one term is not supported");
        if (e->extent[l] >= 0 && e->extent[l] != x->dims[i] && x->dims[i] != 1 && e->extent[l] != 1)
            return bad("Einsum inputs disagree on a letter's extent");
        if (e->extent[l] < 0 || e->extent[l] == 1) e->extent[l] = x->dims[i];
        e->axes[k][i] = l;
    }
    e->rank[k] = (int)len;
    return NULL;
}

onnxtl_status *otl_einsum_parse(const otl_node *nd, const otl_tinfo *t, otl_einsum *e) {
    const char *eq = nd->attrs.equation, *arrow = strstr(eq, "->");
    memset(e, 0, sizeof *e);
    for (int l = 0; l < 52; l++) e->extent[l] = -1;
    e->n_in = nd->n_in;
    if (nd->n_in > OTL_EINSUM_MAX_IN) return bad("Einsum has too many inputs");
    const char *p = eq;
    for (int k = 0; k < nd->n_in; k++) {
        const char *end = k + 1 < nd->n_in ? strchr(p, ',') : arrow ? arrow : eq + strlen(eq);
        if (!end || (k + 1 < nd->n_in && arrow && end > arrow)) return bad("Einsum's equation has fewer terms than inputs");
        OTL_TRY(einsum_term(p, (size_t)(end - p), &t[nd->in[k]], e, k));
        p = end + 1;
    }
    if (arrow) {
        const char *o = arrow + 2;
        for (; *o; o++) {
            int l = letter_index(*o);
            if (l < 0 || e->extent[l] < 0) return bad("Einsum's output names a letter no input has");
            if (e->out_rank == ONNXTL_MAX_RANK) return bad("Einsum's output has too many axes");
            e->out[e->out_rank++] = l;
        }
    } else { /* implicit: the letters used once, in alphabetical order */
        for (int l = 0; l < 52; l++) {
            int uses = 0;
            for (int k = 0; k < e->n_in; k++)
                for (int i = 0; i < e->rank[k]; i++) uses += e->axes[k][i] == l;
            if (uses == 1 && e->out_rank < ONNXTL_MAX_RANK) e->out[e->out_rank++] = l;
        }
    }
    return NULL;
}

static onnxtl_status *infer_einsum(const otl_node *nd, otl_tinfo *t) {
    otl_einsum e;
    for (int k = 0; k < nd->n_in; k++) OTL_TRY(need_float(&t[nd->in[k]], "Einsum"));
    OTL_TRY(otl_einsum_parse(nd, t, &e));
    int64_t dims[ONNXTL_MAX_RANK];
    for (int i = 0; i < e.out_rank; i++) dims[i] = e.extent[e.out[i]];
    set_out(&t[nd->out[0]], ONNXTL_FLOAT, e.out_rank, dims);
    return NULL;
}

/* PRelu(x, slope): slope broadcasts to x. */
static onnxtl_status *infer_prelu(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, "PRelu"));
    OTL_TRY(need_float(&t[nd->in[1]], "PRelu"));
    if (!broadcasts_to(&t[nd->in[1]], x)) return bad("PRelu's slope must broadcast to its input");
    set_out(&t[nd->out[0]], x->dtype, x->rank, x->dims);
    return NULL;
}

/* One scale and one bias per channel, over the spatial axes. */
static onnxtl_status *infer_instancenorm(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, "InstanceNormalization"));
    if (x->rank < 3) return bad("InstanceNormalization expects (N, C, ...)");
    for (int k = 1; k < 3; k++)
        if (t[nd->in[k]].rank != 1 || t[nd->in[k]].dims[0] != x->dims[1] || t[nd->in[k]].dtype != ONNXTL_FLOAT)
            return bad("InstanceNormalization's scale and B need one float per channel");
    set_out(&t[nd->out[0]], x->dtype, x->rank, x->dims);
    return NULL;
}

static onnxtl_status *infer_imagescaler(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, "ImageScaler"));
    if (x->rank != 4 || (nd->attrs.n_floats && nd->attrs.n_floats != x->dims[1]))
        return bad("ImageScaler expects [N, C, H, W] and one bias per channel");
    set_out(&t[nd->out[0]], x->dtype, x->rank, x->dims);
    return NULL;
}

onnxtl_status *otl_split_sizes(const otl_node *nd, const otl_tinfo *t, int64_t *axis, int64_t *sizes) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, axis));
    const int64_t dim = x->dims[*axis];
    int n = nd->n_out, given = -1;
    if (nd->opset < 13 && nd->attrs.n_split >= 0) {
        given = nd->attrs.n_split;
        memcpy(sizes, nd->attrs.split, sizeof(int64_t) * (size_t)given);
    } else if (nd->n_in > 1 && nd->in[1] >= 0) {
        OTL_TRY(otl_tinfo_ints(&t[nd->in[1]], "split", sizes, OTL_MAX_SPLIT, &given));
    }
    if (given >= 0) {
        int64_t sum = 0;
        for (int i = 0; i < given; i++) sum += sizes[i] < 0 ? -1 : sizes[i];
        if (given != n || sum != dim) return bad("Split's sizes do not add up to the axis, one per output");
        return NULL;
    }
    /* equal parts; from opset 18 the last may be smaller (num_outputs) */
    const int64_t part = nd->opset >= 18 ? (dim + n - 1) / n : dim / n;
    if (nd->opset < 18 && dim % n) return bad("Split cannot cut the axis into equal parts");
    for (int i = 0; i < n; i++) sizes[i] = i + 1 < n ? part : dim - part * (n - 1);
    if (sizes[n - 1] < 0) return bad("Split has more outputs than the axis has room for");
    return NULL;
}

static onnxtl_status *infer_split(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axis, sizes[OTL_MAX_SPLIT];
    OTL_TRY(otl_split_sizes(nd, t, &axis, sizes));
    for (int k = 0; k < nd->n_out; k++) {
        if (nd->out[k] < 0) continue;
        int64_t dims[ONNXTL_MAX_RANK];
        memcpy(dims, x->dims, sizeof dims);
        dims[axis] = sizes[k];
        set_out(&t[nd->out[k]], x->dtype, x->rank, dims);
    }
    return NULL;
}

static onnxtl_status *infer_tile(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t repeats[ONNXTL_MAX_RANK], dims[ONNXTL_MAX_RANK];
    int n;
    OTL_TRY(otl_tinfo_ints(&t[nd->in[1]], "repeats", repeats, ONNXTL_MAX_RANK, &n));
    if (n != x->rank) return bad("Tile needs one repeat per axis");
    for (int i = 0; i < n; i++) {
        if (repeats[i] < 0) return bad("Tile's repeats must not be negative");
        if (!otl_mul_i64(x->dims[i], repeats[i], &dims[i])) return bad("Tile's output is too large");
    }
    set_out(&t[nd->out[0]], x->dtype, x->rank, dims);
    return NULL;
}

static onnxtl_status *infer_argmax(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    int64_t axis, dims[ONNXTL_MAX_RANK];
    OTL_TRY(need_numeric(x, otl_op_name(nd->op)));
    OTL_TRY(otl_norm_axis(nd->attrs.axis, x->rank, &axis));
    if (x->dims[axis] == 0) return bad("ArgMax/ArgMin over an empty axis");
    int r = 0;
    for (int i = 0; i < x->rank; i++)
        if (i != axis) dims[r++] = x->dims[i];
        else if (nd->attrs.keepdims) dims[r++] = 1;
    set_out(&t[nd->out[0]], ONNXTL_INT64, r, dims);
    return NULL;
}

/* DepthToSpace moves blocks of channels into b x b pixels; SpaceToDepth back. */
static onnxtl_status *infer_depth_to_space(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    const int64_t b = nd->attrs.blocksize;
    if (x->rank != 4 || b < 1) return bad("DepthToSpace/SpaceToDepth expect [N, C, H, W] and a positive blocksize");
    int64_t dims[4] = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    if (nd->op == OP_DEPTHTOSPACE) {
        if (x->dims[1] % (b * b)) return bad("DepthToSpace's channels are not a multiple of blocksize squared");
        dims[1] /= b * b, dims[2] *= b, dims[3] *= b;
    } else {
        if (x->dims[2] % b || x->dims[3] % b) return bad("SpaceToDepth's height and width are not multiples of blocksize");
        dims[1] *= b * b, dims[2] /= b, dims[3] /= b;
    }
    set_out(&t[nd->out[0]], x->dtype, 4, dims);
    return NULL;
}

/* An optional constant input of any float type, as floats; absent or empty gives 0 values. */
static onnxtl_status *optional_floats(const otl_node *nd, const otl_tinfo *t, int k, const char *what, float *out,
                                      int max, int *n) {
    *n = 0;
    if (k >= nd->n_in || nd->in[k] < 0 || !otl_tinfo_count(&t[nd->in[k]])) return NULL;
    const otl_tinfo *x = &t[nd->in[k]];
    if (!x->data)
        return otl_error(ONNXTL_ERR_UNSUPPORTED, "%s's %s must be a constant (computed values are not supported)",
                         otl_op_name(nd->op), what);
    if (!otl_dtype_is_float(x->dtype) || x->rank != 1 || otl_tinfo_count(x) > max)
        return otl_error(ONNXTL_ERR_MODEL, "%s's %s must be a 1-D float tensor of at most %d values",
                         otl_op_name(nd->op), what, max);
    *n = (int)otl_tinfo_count(x);
    for (int i = 0; i < *n; i++) out[i] = (float)otl_dtype_load(x->data, x->dtype, i);
    return NULL;
}

#define RESIZE_MAX_DIM ((float)((int64_t)1 << 40)) /* far past any memory, still exact in int64 */

/* Resize-18's keep_aspect_ratio_policy: one scale for every listed axis. */
static void keep_aspect(const otl_attrs *a, const int64_t *axes, int n_axes, const int64_t *sizes, otl_resize *r) {
    float scale = 0;
    for (int j = 0; j < n_axes; j++) {
        float s = (float)sizes[j] / (float)r->in[axes[j]];
        if (j == 0 || (a->keep_aspect == 1 ? s < scale : s > scale)) scale = s;
    }
    for (int j = 0; j < n_axes; j++) {
        const float out = roundf(scale * (float)r->in[axes[j]]);
        r->scale[axes[j]] = scale;
        r->out[axes[j]] = out <= RESIZE_MAX_DIM ? (int64_t)out : -1; /* refused by otl_resize_plan */
    }
}

onnxtl_status *otl_resize_plan(const otl_node *nd, const otl_tinfo *t, otl_resize *r) {
    const otl_tinfo *x = &t[nd->in[0]];
    const otl_attrs *a = &nd->attrs;
    const bool modern = nd->op == OP_RESIZE && nd->opset >= 11; /* X, roi, scales, sizes */
    r->rank = x->rank;
    r->coord_mode = modern ? a->coord_mode : COORD_ASYMMETRIC;
    r->nearest_mode = modern ? a->nearest_mode : NEAREST_UPSAMPLE;
    for (int i = 0; i < x->rank; i++)
        r->in[i] = r->out[i] = x->dims[i], r->scale[i] = 1, r->roi_start[i] = 0, r->roi_end[i] = 1;
    int64_t axes[ONNXTL_MAX_RANK], sizes[ONNXTL_MAX_RANK];
    int n_axes = a->n_axes > 0 ? a->n_axes : x->rank, n_scales = 0, n_sizes = 0, n_roi = 0;
    for (int j = 0; j < n_axes; j++) OTL_TRY(otl_norm_axis(a->n_axes > 0 ? a->axes[j] : j, x->rank, &axes[j]));
    float scales[ONNXTL_MAX_RANK], roi[2 * ONNXTL_MAX_RANK];
    if (nd->op == OP_UPSAMPLE && nd->opset < 9) {
        if (a->n_floats > ONNXTL_MAX_RANK) return bad("Upsample has too many scales");
        n_scales = a->n_floats;
        memcpy(scales, a->floats, sizeof(float) * (size_t)n_scales);
    } else {
        OTL_TRY(optional_floats(nd, t, modern ? 2 : 1, "scales", scales, ONNXTL_MAX_RANK, &n_scales));
    }
    if (modern && nd->n_in > 3 && nd->in[3] >= 0 && otl_tinfo_count(&t[nd->in[3]]))
        OTL_TRY(otl_tinfo_ints(&t[nd->in[3]], "sizes", sizes, ONNXTL_MAX_RANK, &n_sizes));
    if (modern && r->coord_mode == COORD_TF_CROP_AND_RESIZE)
        OTL_TRY(optional_floats(nd, t, 1, "roi", roi, 2 * ONNXTL_MAX_RANK, &n_roi));
    if ((n_sizes && n_sizes != n_axes) || (n_scales && n_scales != n_axes) || (n_roi && n_roi != 2 * n_axes))
        return bad("Resize's scales, sizes or roi do not have one entry per axis");
    if (!n_sizes == !n_scales) return bad("Resize needs exactly one of scales and sizes");
    if (n_sizes && a->keep_aspect) keep_aspect(a, axes, n_axes, sizes, r);
    for (int j = 0; j < n_axes && !(n_sizes && a->keep_aspect); j++) {
        const int64_t ax = axes[j];
        if (n_sizes) {
            r->out[ax] = sizes[j], r->scale[ax] = (float)sizes[j] / (float)r->in[ax];
        } else {
            const float out = floorf((float)r->in[ax] * scales[j]);
            if (!(scales[j] > 0) || !(out <= RESIZE_MAX_DIM)) return bad("Resize's scales must be positive and finite");
            r->scale[ax] = scales[j], r->out[ax] = (int64_t)out;
        }
    }
    for (int j = 0; j < n_roi / 2; j++) r->roi_start[axes[j]] = roi[j], r->roi_end[axes[j]] = roi[n_axes + j];
    for (int i = 0; i < x->rank; i++)
        if (r->out[i] < 1 || r->out[i] > (int64_t)RESIZE_MAX_DIM) return bad("Resize's output would be empty or too large");
    return NULL;
}

static onnxtl_status *infer_resize(const otl_node *nd, otl_tinfo *t) {
    const otl_tinfo *x = &t[nd->in[0]];
    OTL_TRY(need_float(x, otl_op_name(nd->op)));
    otl_resize r;
    OTL_TRY(otl_resize_plan(nd, t, &r));
    set_out(&t[nd->out[0]], x->dtype, x->rank, r.out);
    return NULL;
}

/* Each op's shape function, as its registry entry names it. */
static onnxtl_status *(*const shape_of[OP_COUNT])(const otl_node *, otl_tinfo *) = {
#define OTL_OP(id, domain, name, shape) [OP_##id] = shape,
#define OTL_VERSION(...)
#include "ops.def"
#undef OTL_OP
#undef OTL_VERSION
};

onnxtl_status *otl_infer_node(const otl_node *nd, otl_tinfo *t) {
    if (nd->op < OP_COUNT && shape_of[nd->op]) return shape_of[nd->op](nd, t);
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "no shape function for %s", otl_op_name(nd->op));
}
