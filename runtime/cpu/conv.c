/* Convolution as im2col + sgemm, per image and group; 1x1 stride-1 convs use
 * the input directly.  ConvTranspose is its adjoint: sgemm with W transposed,
 * then col2im.  Spatial dims are normalised to 3-D (otl_window). */
#include <string.h>

#include "cpu_kernels.h"

static bool is_pointwise(const otl_window *w) {
    for (int i = 0; i < 3; i++)
        if (w->kernel[i] != 1 || w->stride[i] != 1 || w->pad_begin[i] || w->pad_end[i]) return false;
    return true;
}

static onnxtl_status *conv_window(const otl_node *n, const otl_tinfo *t, otl_window *w) {
    const otl_tinfo *x = &t[n->in[0]], *wt = &t[n->in[1]];
    return otl_window_init(&n->attrs, x->rank - 2, x->dims + 2, wt->dims + 2, false, w);
}

static onnxtl_status *conv_transpose_window(const otl_node *n, const otl_tinfo *t, otl_window *w) {
    const otl_tinfo *x = &t[n->in[0]], *wt = &t[n->in[1]];
    return otl_window_transpose(&n->attrs, x->rank - 2, x->dims + 2, wt->dims + 2, w);
}

static int64_t window_size(const int64_t *v) { return v[0] * v[1] * v[2]; }

/* ConvTranspose's columns: one row per (output channel of a group, kernel
 * offset), one column per input position. */
static size_t conv_transpose_workspace(const otl_node *n, const otl_tinfo *t) {
    otl_window w;
    onnxtl_status *st = conv_transpose_window(n, t, &w);
    if (st) {
        onnxtl_status_release(st);
        return 0;
    }
    return (size_t)(t[n->in[1]].dims[1] * window_size(w.kernel) * window_size(w.out));
}

size_t otl_cpu_workspace_floats(const otl_node *n, const otl_tinfo *t) {
    otl_window w;
    if (n->op == OP_CONVTRANSPOSE) return conv_transpose_workspace(n, t);
    if (n->op != OP_CONV) return 0;
    onnxtl_status *st = conv_window(n, t, &w);
    if (st) {
        onnxtl_status_release(st);
        return 0;
    }
    if (is_pointwise(&w)) return 0;
    int64_t cg = t[n->in[1]].dims[1];
    return (size_t)(cg * window_size(w.kernel) * window_size(w.out));
}

/* Unfolds one image's channels into rows of (channel, kernel offset) by output position. */
static void im2col(const float *x, int64_t channels, const otl_window *w, float *col, int64_t ld) {
    const int64_t kd = w->kernel[0], kh = w->kernel[1], kw = w->kernel[2];
    const int64_t od = w->out[0], oh = w->out[1], ow = w->out[2];
    const int64_t D = w->in[0], H = w->in[1], W = w->in[2];
    const int64_t rows = channels * kd * kh * kw;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t c = r / (kd * kh * kw), k = r % (kd * kh * kw);
        int64_t kz = k / (kh * kw), ky = (k / kw) % kh, kx = k % kw;
        const float *src = x + c * D * H * W;
        float *dst = col + r * ld;
        for (int64_t oz = 0; oz < od; oz++) {
            int64_t iz = oz * w->stride[0] - w->pad_begin[0] + kz * w->dilation[0];
            for (int64_t oy = 0; oy < oh; oy++) {
                int64_t iy = oy * w->stride[1] - w->pad_begin[1] + ky * w->dilation[1];
                float *d = dst + (oz * oh + oy) * ow;
                if (iz < 0 || iz >= D || iy < 0 || iy >= H) {
                    for (int64_t ox = 0; ox < ow; ox++) d[ox] = 0.0f;
                    continue;
                }
                const float *s = src + (iz * H + iy) * W;
                for (int64_t ox = 0; ox < ow; ox++) {
                    int64_t ix = ox * w->stride[2] - w->pad_begin[2] + kx * w->dilation[2];
                    d[ox] = ix >= 0 && ix < W ? s[ix] : 0.0f;
                }
            }
        }
    }
}

/* The adjoint of im2col: adds each row of col onto the image position that
 * im2col would have read it from.  Threads own whole channels. */
static void col2im(const float *col, int64_t ld, int64_t channels, const otl_window *w, float *y) {
    const int64_t kd = w->kernel[0], kh = w->kernel[1], kw = w->kernel[2], taps = kd * kh * kw;
    const int64_t od = w->out[0], oh = w->out[1], ow = w->out[2];
    const int64_t D = w->in[0], H = w->in[1], W = w->in[2];
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < channels; c++) {
        float *dst = y + c * D * H * W;
        for (int64_t k = 0; k < taps; k++) {
            int64_t kz = k / (kh * kw), ky = (k / kw) % kh, kx = k % kw;
            const float *src = col + (c * taps + k) * ld;
            for (int64_t oz = 0; oz < od; oz++) {
                int64_t iz = oz * w->stride[0] - w->pad_begin[0] + kz * w->dilation[0];
                if (iz < 0 || iz >= D) continue;
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * w->stride[1] - w->pad_begin[1] + ky * w->dilation[1];
                    if (iy < 0 || iy >= H) continue;
                    float *d = dst + (iz * H + iy) * W;
                    const float *s = src + (oz * oh + oy) * ow;
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t ix = ox * w->stride[2] - w->pad_begin[2] + kx * w->dilation[2];
                        if (ix >= 0 && ix < W) d[ix] += s[ox];
                    }
                }
            }
        }
    }
}

/* Adds the per-channel bias (when there is one) and applies a fused activation. */
static void finish_output(float *y, const float *bias, const otl_attrs *a, int64_t channels, int64_t plane) {
    if (!bias && !a->fused_relu && !a->fused_act) return;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < channels; c++) {
        float b = bias ? bias[c] : 0.0f;
        for (int64_t i = 0; i < plane; i++) y[c * plane + i] = otl_fused_activation(a, y[c * plane + i] + b);
    }
}

onnxtl_status *otl_cpu_conv(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *wt = IN_T(a, 1);
    otl_window w;
    OTL_TRY(conv_window(a->n, a->t, &w));
    const int64_t groups = a->n->attrs.group, batch = x->dims[0];
    const int64_t cg = wt->dims[1], m = wt->dims[0], mg = m / groups;
    const int64_t kdim = cg * window_size(w.kernel), in_plane = window_size(w.in);
    const int64_t out_plane = window_size(w.out);
    const bool pointwise = is_pointwise(&w);
    const float *X = a->in[0], *Wt = a->in[1], *bias = a->n->n_in > 2 ? a->in[2] : NULL;
    float *Y = a->out[0];
    /* A fused residual starts in the output (it may share the buffer) and the
     * products accumulate onto it. */
    const bool residual = a->n->attrs.fused_add;
    if (residual && a->in[3] != Y) memcpy(Y, a->in[3], otl_tinfo_bytes(OUT_T(a, 0)));
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t g = 0; g < groups; g++) {
            const float *xg = X + (b * groups + g) * cg * in_plane;
            const float *col = xg;
            if (!pointwise) {
                im2col(xg, cg, &w, a->workspace, out_plane);
                col = a->workspace;
            }
            float *yg = Y + (b * m + g * mg) * out_plane;
            OTL_TRY(otl_sgemm(false, false, mg, out_plane, kdim, 1.0f, Wt + g * mg * kdim, kdim, col,
                              out_plane, residual ? 1.0f : 0.0f, yg, out_plane));
        }
        finish_output(Y + b * m * out_plane, bias, &a->n->attrs, m, out_plane);
    }
    return NULL;
}

onnxtl_status *otl_cpu_conv_transpose(const otl_kernel_args *a) {
    const otl_tinfo *x = IN_T(a, 0), *wt = IN_T(a, 1);
    otl_window w;
    OTL_TRY(conv_transpose_window(a->n, a->t, &w));
    const int64_t groups = a->n->attrs.group, batch = x->dims[0];
    const int64_t cg = x->dims[1] / groups, mg = wt->dims[1], m = mg * groups, rows = mg * window_size(w.kernel);
    const int64_t in_plane = window_size(w.out), out_plane = window_size(w.in);
    const float *X = a->in[0], *Wt = a->in[1], *bias = a->n->n_in > 2 ? a->in[2] : NULL;
    float *Y = a->out[0];
    memset(Y, 0, otl_tinfo_bytes(OUT_T(a, 0)));
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t g = 0; g < groups; g++) {
            const float *xg = X + (b * groups + g) * cg * in_plane;
            OTL_TRY(otl_sgemm(true, false, rows, in_plane, cg, 1.0f, Wt + g * cg * rows, rows, xg, in_plane, 0.0f,
                              a->workspace, in_plane));
            col2im(a->workspace, in_plane, mg, &w, Y + (b * m + g * mg) * out_plane);
        }
        finish_output(Y + b * m * out_plane, bias, &a->n->attrs, m, out_plane);
    }
    return NULL;
}

/* The backward pass takes images a chunk at a time, so that its GEMMs run
 * over chunk x out_plane columns, not one small image's: as many images as
 * fit in this many floats of workspace (at least one). */
#define BACKWARD_WORKSPACE_FLOATS ((int64_t)16 << 20)

typedef struct {
    int64_t chunk, kdim, mg, out_plane;
} backward_shape;

static onnxtl_status *backward_shape_of(const otl_node *n, const otl_tinfo *t, otl_window *w, backward_shape *s) {
    OTL_TRY(conv_window(n, t, w));
    const otl_tinfo *wt = &t[n->in[1]];
    s->mg = wt->dims[0] / n->attrs.group;
    s->kdim = wt->dims[1] * window_size(w->kernel), s->out_plane = window_size(w->out);
    const int64_t per_image = (2 * s->kdim + s->mg) * s->out_plane, batch = t[n->in[0]].dims[0];
    s->chunk = BACKWARD_WORKSPACE_FLOATS / (per_image ? per_image : 1);
    s->chunk = s->chunk < 1 ? 1 : s->chunk > batch ? batch : s->chunk;
    return NULL;
}

/* A chunk's columns, their gradient and its dY, each chunk x out_plane wide. */
size_t otl_cpu_backward_workspace_floats(const otl_node *n, const otl_tinfo *t) {
    otl_window w;
    backward_shape s;
    if (n->op != OP_CONV) return 0;
    onnxtl_status *st = backward_shape_of(n, t, &w, &s);
    if (st) {
        onnxtl_status_release(st);
        return 0;
    }
    return (size_t)((2 * s.kdim + s.mg) * s.chunk * s.out_plane);
}

/* Per chunk of images and group, with col the chunk's input columns side by
 * side and dyg its dY rows likewise: dW += dyg col^T, db += the sums of
 * dyg's rows, dX += col2im(W^T dyg) image by image. */
onnxtl_status *otl_cpu_conv_backward(const otl_grad_args *a) {
    const otl_kernel_args *f = &a->f;
    const otl_tinfo *x = IN_T(f, 0);
    otl_window w;
    backward_shape sh;
    OTL_TRY(backward_shape_of(f->n, f->t, &w, &sh));
    const int64_t groups = f->n->attrs.group, batch = x->dims[0], cg = IN_T(f, 1)->dims[1];
    const int64_t kdim = sh.kdim, mg = sh.mg, m = mg * groups, P = sh.out_plane, in_plane = window_size(w.in);
    const float *X = f->in[0], *Wt = f->in[1], *dY = a->dout[0];
    float *dX = a->din[0], *dW = a->din[1], *db = f->n->n_in > 2 ? a->din[2] : NULL;
    for (int64_t b0 = 0; b0 < batch; b0 += sh.chunk) {
        const int64_t nb = batch - b0 < sh.chunk ? batch - b0 : sh.chunk, ld = nb * P;
        float *col = f->workspace, *dcol = col + kdim * ld, *dyg = dcol + kdim * ld;
        for (int64_t g = 0; g < groups; g++) {
            for (int64_t b = 0; b < nb; b++)
                for (int64_t o = 0; o < mg; o++)
                    memcpy(dyg + o * ld + b * P, dY + ((b0 + b) * m + g * mg + o) * P, (size_t)P * sizeof(float));
            if (dW) {
                for (int64_t b = 0; b < nb; b++) im2col(X + ((b0 + b) * groups + g) * cg * in_plane, cg, &w, col + b * P, ld);
                OTL_TRY(otl_sgemm(false, true, mg, kdim, ld, 1.0f, dyg, ld, col, ld, 1.0f, dW + g * mg * kdim, kdim));
            }
            if (db)
                for (int64_t o = 0; o < mg; o++) {
                    double sum = 0;
                    for (int64_t i = 0; i < ld; i++) sum += dyg[o * ld + i];
                    db[g * mg + o] += (float)sum;
                }
            if (dX) {
                OTL_TRY(otl_sgemm(true, false, kdim, ld, mg, 1.0f, Wt + g * mg * kdim, kdim, dyg, ld, 0.0f, dcol, ld));
                for (int64_t b = 0; b < nb; b++) col2im(dcol + b * P, ld, cg, &w, dX + ((b0 + b) * groups + g) * cg * in_plane);
            }
        }
    }
    return NULL;
}
