#include "preprocess.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

void otl_preprocess_default(otl_preprocess *p) {
    *p = (otl_preprocess){.resize_short = 256, .crop_w = 224, .crop_h = 224,
                          .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
}

static bool parse_size(const char *s, int *h, int *w) {
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || a < 1 || a > 65535) return false;
    if (!*end) {
        *h = *w = (int)a;
        return true;
    }
    if (*end != 'x') return false;
    const char *s2 = end + 1;
    long b = strtol(s2, &end, 10);
    if (end == s2 || *end || b < 1 || b > 65535) return false;
    *h = (int)a;
    *w = (int)b;
    return true;
}

static bool parse_triple(const char *s, float *v) {
    char *end;
    for (int i = 0; i < 3; i++) {
        v[i] = strtof(s, &end);
        if (end == s || !isfinite(v[i])) return false;
        if (*end == '\0' && i == 0) { /* one value for all channels */
            v[1] = v[2] = v[0];
            return true;
        }
        if (i < 2 && *end != ',') return false;
        s = end + 1;
    }
    return *end == '\0';
}

onnxtl_status *otl_preprocess_parse(otl_preprocess *p, const char *resize, const char *crop,
                                    const char *mean, const char *std) {
    if (resize) {
        p->resize_short = p->resize_w = p->resize_h = 0;
        int h, w;
        if (!strcmp(resize, "none")) {
        } else if (strchr(resize, 'x') && parse_size(resize, &h, &w)) {
            p->resize_h = h, p->resize_w = w;
        } else if (parse_size(resize, &h, &w)) {
            p->resize_short = h;
        } else {
            return otl_error(ONNXTL_ERR_ARG, "--resize takes N (shorter side), HxW, or none; got '%s'", resize);
        }
    }
    if (crop) {
        if (!strcmp(crop, "none")) p->crop_h = p->crop_w = 0;
        else if (!parse_size(crop, &p->crop_h, &p->crop_w))
            return otl_error(ONNXTL_ERR_ARG, "--crop takes N, HxW, or none; got '%s'", crop);
    }
    if (mean && !parse_triple(mean, p->mean))
        return otl_error(ONNXTL_ERR_ARG, "--mean takes three numbers like 0.485,0.456,0.406; got '%s'", mean);
    if (std && !parse_triple(std, p->std))
        return otl_error(ONNXTL_ERR_ARG, "--std takes three numbers like 0.229,0.224,0.225; got '%s'", std);
    for (int c = 0; std && c < 3; c++)
        if (p->std[c] == 0) return otl_error(ONNXTL_ERR_ARG, "--std must not be zero");
    return NULL;
}

bool otl_preprocess_fixed_size(const otl_preprocess *p, int *h, int *w) {
    if (p->crop_h) *h = p->crop_h, *w = p->crop_w;
    else if (p->resize_h) *h = p->resize_h, *w = p->resize_w;
    else return false;
    return true;
}

static void size_text(char *buf, size_t n, int h, int w) {
    if (h) snprintf(buf, n, "%dx%d", h, w);
    else snprintf(buf, n, "none");
}

void otl_preprocess_to_text(const otl_preprocess *p, otl_preprocess_text *t) {
    if (p->resize_short) snprintf(t->resize, sizeof t->resize, "%d", p->resize_short);
    else size_text(t->resize, sizeof t->resize, p->resize_h, p->resize_w);
    size_text(t->crop, sizeof t->crop, p->crop_h, p->crop_w);
    snprintf(t->mean, sizeof t->mean, "%.9g,%.9g,%.9g", p->mean[0], p->mean[1], p->mean[2]);
    snprintf(t->std, sizeof t->std, "%.9g,%.9g,%.9g", p->std[0], p->std[1], p->std[2]);
}

void otl_preprocess_describe(const otl_preprocess *p, char *buf, size_t n) {
    char resize[64], crop[64];
    if (p->resize_short) snprintf(resize, sizeof resize, "Resize(%d)", p->resize_short);
    else if (p->resize_h) snprintf(resize, sizeof resize, "Resize([%d, %d])", p->resize_h, p->resize_w);
    else snprintf(resize, sizeof resize, "no Resize");
    if (p->crop_h) snprintf(crop, sizeof crop, "CenterCrop([%d, %d])", p->crop_h, p->crop_w);
    else snprintf(crop, sizeof crop, "no CenterCrop");
    snprintf(buf, n, "%s, %s, Normalize(mean=[%g, %g, %g], std=[%g, %g, %g])", resize, crop,
             p->mean[0], p->mean[1], p->mean[2], p->std[0], p->std[1], p->std[2]);
}

/* Pillow's resampler (ImagingResample, bilinear, 8 bits per channel):
 * per output pixel a triangle filter widened by the downscale factor,
 * weights normalised, converted to 22-bit fixed point, and each pass
 * rounded back to uint8.  Reproducing it keeps the output bit-exact. */
#define PRECISION_BITS 22

typedef struct {
    int ksize;
    int *bounds;  /* per output: first input index, count */
    int32_t *kk;  /* per output: ksize fixed-point weights */
} resample_coeffs;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static onnxtl_status *precompute_coeffs(int in_size, int out_size, resample_coeffs *c) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->kk = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)c->ksize);
    double *k = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->bounds || !c->kk || !k) {
        free(k);
        return otl_nomem();
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            k[x] = triangle((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        for (int x = 0; x < c->ksize; x++) {
            double w = x < xmax && ww != 0.0 ? k[x] / ww : 0.0;
            c->kk[xx * c->ksize + x] = (int32_t)(w < 0 ? -0.5 + w * (1 << PRECISION_BITS)
                                                       : 0.5 + w * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(k);
    return NULL;
}

static void free_coeffs(resample_coeffs *c) {
    free(c->bounds);
    free(c->kk);
}

static uint8_t clip8(int32_t ss) {
    int32_t v = ss >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The part of the resized image that the crop reads: columns [x0, x1) and
 * rows [y0, y1).  Only it is computed; each of its pixels comes out exactly
 * as in the full resize, since every output pixel has its own taps. */
typedef struct {
    int x0, y0, x1, y1;
} window;

/* Horizontal pass over input rows [r0, r1), output columns [win->x0, win->x1):
 * each output pixel sums its taps over the three channels at once. */
static void resample_horizontal(const uint8_t *src, int w, int r0, int r1, uint8_t *dst, const window *win,
                                const resample_coeffs *c) {
    const int out_w = win->x1 - win->x0;
    for (int y = r0; y < r1; y++) {
        const uint8_t *row = src + (size_t)y * w * 3;
        uint8_t *out = dst + (size_t)(y - r0) * out_w * 3;
        for (int xx = win->x0; xx < win->x1; xx++, out += 3) {
            const int xmin = c->bounds[2 * xx], xmax = c->bounds[2 * xx + 1];
            const int32_t *k = &c->kk[xx * c->ksize];
            const uint8_t *p = row + (size_t)xmin * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; x++, p += 3) {
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            out[0] = clip8(s0);
            out[1] = clip8(s1);
            out[2] = clip8(s2);
        }
    }
}

/* Vertical pass for output rows [win->y0, win->y1) from src, which holds
 * input rows from r0 on: whole rows are accumulated tap by tap, so memory is
 * read in order. */
static void resample_vertical(const uint8_t *src, int r0, uint8_t *dst, const window *win, const resample_coeffs *c,
                              int32_t *acc) {
    const size_t row_bytes = (size_t)(win->x1 - win->x0) * 3;
    for (int yy = win->y0; yy < win->y1; yy++) {
        const int ymin = c->bounds[2 * yy], ymax = c->bounds[2 * yy + 1];
        const int32_t *k = &c->kk[yy * c->ksize];
#pragma omp simd
        for (size_t i = 0; i < row_bytes; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < ymax; t++) {
            const uint8_t *row = src + (size_t)(ymin - r0 + t) * row_bytes;
            const int32_t kt = k[t];
#pragma omp simd
            for (size_t i = 0; i < row_bytes; i++) acc[i] += row[i] * kt;
        }
        uint8_t *out = dst + (size_t)(yy - win->y0) * row_bytes;
#pragma omp simd
        for (size_t i = 0; i < row_bytes; i++) out[i] = clip8(acc[i]);
    }
}

/* Copies columns [win->x0, win->x1) of rows [r0, r1): the horizontal pass when the width does not change. */
static void copy_columns(const uint8_t *src, int w, int r0, int r1, uint8_t *dst, const window *win) {
    const size_t bytes = (size_t)(win->x1 - win->x0) * 3;
    for (int y = r0; y < r1; y++) memcpy(dst + (size_t)(y - r0) * bytes, src + ((size_t)y * w + (size_t)win->x0) * 3, bytes);
}

/* Resizes RGB8 to out_w x out_h, horizontal pass first, as Pillow does, and
 * keeps only the window: out is (x1 - x0) x (y1 - y0). */
static onnxtl_status *resize_rgb(const otl_image *in, int out_w, int out_h, const window *win, otl_image *out) {
    const int w = in->width, h = in->height, win_w = win->x1 - win->x0, win_h = win->y1 - win->y0;
    resample_coeffs hc = {0}, vc = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    onnxtl_status *st = NULL;
    int r0 = win->y0, r1 = win->y1; /* the input rows the vertical pass reads */
    if (out_h != h) {
        OTL_TRY_GOTO(st, precompute_coeffs(h, out_h, &vc), done);
        r0 = vc.bounds[2 * win->y0];
        r1 = vc.bounds[2 * (win->y1 - 1)] + vc.bounds[2 * (win->y1 - 1) + 1];
    }
    if (out_w != w) OTL_TRY_GOTO(st, precompute_coeffs(w, out_w, &hc), done);
    tmp = malloc((size_t)win_w * (size_t)(r1 - r0) * 3 + 1);
    out->rgb = malloc((size_t)win_w * (size_t)win_h * 3 + 1);
    acc = malloc(sizeof(int32_t) * (size_t)win_w * 3 + 1);
    if (!tmp || !out->rgb || !acc) {
        st = otl_nomem();
        goto done;
    }
    out->width = win_w;
    out->height = win_h;
    if (out_w != w) resample_horizontal(in->rgb, w, r0, r1, tmp, win, &hc);
    else copy_columns(in->rgb, w, r0, r1, tmp, win);
    if (out_h != h) resample_vertical(tmp, r0, out->rgb, win, &vc, acc);
    else memcpy(out->rgb, tmp, (size_t)win_w * (size_t)win_h * 3);
done:
    free_coeffs(&hc);
    free_coeffs(&vc);
    free(tmp);
    free(acc);
    if (st) otl_image_free(out);
    return st;
}

/* torchvision's output size for Resize(N): the shorter side becomes N, the longer int(N * long / short). */
static void resized_size(const otl_preprocess *p, int w, int h, int *ow, int *oh) {
    if (p->resize_h) {
        *ow = p->resize_w;
        *oh = p->resize_h;
    } else if (p->resize_short) {
        bool w_short = w <= h;
        int s = w_short ? w : h, l = w_short ? h : w;
        int nl = (int)((double)p->resize_short * l / s);
        *ow = w_short ? p->resize_short : nl;
        *oh = w_short ? nl : p->resize_short;
    } else {
        *ow = w;
        *oh = h;
    }
}

/* Where torchvision's CenterCrop starts along one axis.  A larger image is
 * cropped at int(round((size - crop) / 2.0)) (Python rounds half to even);
 * a smaller one is first zero-padded by (crop - size) // 2 before it. */
static int crop_start(int size, int crop) {
    return size >= crop ? (int)nearbyint((size - crop) / 2.0) : -((crop - size) / 2);
}

/* The crop's window on an image of w x h: the part of it inside the image. */
static window crop_window(int w, int h, int ch, int cw) {
    const int top = crop_start(h, ch), left = crop_start(w, cw);
    window win = {left < 0 ? 0 : left, top < 0 ? 0 : top, left + cw > w ? w : left + cw, top + ch > h ? h : top + ch};
    return win;
}

/* CenterCrop fused with ToTensor and Normalize, reading the window src of an
 * image of w x h.  A byte has 256 values, so each channel's
 * (v / 255 - mean) / std -- the same float32 operations as ToTensor and
 * Normalize -- is computed once per value. */
static void crop_normalize(const otl_preprocess *p, const otl_image *src, const window *win, int w, int h, int ch,
                           int cw, float *chw) {
    const int top = crop_start(h, ch), left = crop_start(w, cw);
    float table[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v / 255.0f - p->mean[c]) / p->std[c];
    const size_t plane = (size_t)ch * (size_t)cw;
    for (int y = 0; y < ch; y++) {
        const int sy = y + top;
        const bool row_inside = sy >= win->y0 && sy < win->y1;
        /* the crop's columns inside the image; the rest is padding, zeros before ToTensor */
        const int x_begin = row_inside ? win->x0 - left : cw, x_end = row_inside ? win->x1 - left : cw;
        float *r = chw + (size_t)y * cw, *g = r + plane, *b = g + plane;
        for (int x = 0; x < x_begin; x++) r[x] = table[0][0], g[x] = table[1][0], b[x] = table[2][0];
        const uint8_t *px = row_inside ? src->rgb + (size_t)(sy - win->y0) * src->width * 3 : NULL;
        for (int x = x_begin; x < x_end; x++, px += 3) r[x] = table[0][px[0]], g[x] = table[1][px[1]], b[x] = table[2][px[2]];
        for (int x = x_end; x < cw; x++) r[x] = table[0][0], g[x] = table[1][0], b[x] = table[2][0];
    }
}

onnxtl_status *otl_preprocess_image(const otl_preprocess *p, const otl_image *img, float *chw) {
    int rw, rh;
    resized_size(p, img->width, img->height, &rw, &rh);
    const int ch = p->crop_h ? p->crop_h : rh, cw = p->crop_w ? p->crop_w : rw;
    const window win = crop_window(rw, rh, ch, cw);
    otl_image resized = {0};
    const otl_image *src = img;
    window at = {0, 0, img->width, img->height};
    if (rw != img->width || rh != img->height) {
        OTL_TRY(resize_rgb(img, rw, rh, &win, &resized));
        src = &resized, at = win;
    }
    crop_normalize(p, src, &at, rw, rh, ch, cw, chw);
    otl_image_free(&resized);
    return NULL;
}
