#include "preprocess.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

void otl_preprocess_default(otl_preprocess *p) {
    *p = (otl_preprocess){.resize_short = 256, .crop_w = 224, .crop_h = 224,
                          .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}, .scale = 1};
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

static onnxtl_status *parse_resize(otl_preprocess *p, const char *resize) {
    p->resize_short = p->resize_w = p->resize_h = 0;
    int h, w;
    if (!strcmp(resize, "none")) return NULL;
    if (strchr(resize, 'x') && parse_size(resize, &h, &w)) p->resize_h = h, p->resize_w = w;
    else if (parse_size(resize, &h, &w)) p->resize_short = h;
    else return otl_error(ONNXTL_ERR_ARG, "--resize takes N (shorter side), HxW, or none; got '%s'", resize);
    return NULL;
}

static onnxtl_status *parse_pixels(otl_preprocess *p, const char *channels, const char *scale) {
    if (channels && strcmp(channels, "rgb") && strcmp(channels, "bgr"))
        return otl_error(ONNXTL_ERR_ARG, "--channels takes rgb or bgr; got '%s'", channels);
    if (channels) p->bgr = !strcmp(channels, "bgr");
    if (scale && strcmp(scale, "1") && strcmp(scale, "255"))
        return otl_error(ONNXTL_ERR_ARG, "--scale takes 1 (pixels 0 to 1, as ToTensor) or 255 (0 to 255); got '%s'", scale);
    if (scale) p->scale = atoi(scale);
    return NULL;
}

onnxtl_status *otl_preprocess_parse(otl_preprocess *p, const otl_preprocess_spec *s) {
    if (!s) return NULL;
    if (s->resize) OTL_TRY(parse_resize(p, s->resize));
    if (s->crop) {
        if (!strcmp(s->crop, "none")) p->crop_h = p->crop_w = 0;
        else if (!parse_size(s->crop, &p->crop_h, &p->crop_w))
            return otl_error(ONNXTL_ERR_ARG, "--crop takes N, HxW, or none; got '%s'", s->crop);
    }
    if (s->mean && !parse_triple(s->mean, p->mean))
        return otl_error(ONNXTL_ERR_ARG, "--mean takes three numbers like 0.485,0.456,0.406; got '%s'", s->mean);
    if (s->std && !parse_triple(s->std, p->std))
        return otl_error(ONNXTL_ERR_ARG, "--std takes three numbers like 0.229,0.224,0.225; got '%s'", s->std);
    for (int c = 0; s->std && c < 3; c++)
        if (p->std[c] == 0) return otl_error(ONNXTL_ERR_ARG, "--std must not be zero");
    return parse_pixels(p, s->channels, s->scale);
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
    snprintf(t->channels, sizeof t->channels, "%s", p->bgr ? "bgr" : "rgb");
    snprintf(t->scale, sizeof t->scale, "%d", p->scale);
}

void otl_preprocess_describe(const otl_preprocess *p, char *buf, size_t n) {
    char resize[64], crop[64];
    if (p->resize_short) snprintf(resize, sizeof resize, "Resize(%d)", p->resize_short);
    else if (p->resize_h) snprintf(resize, sizeof resize, "Resize([%d, %d])", p->resize_h, p->resize_w);
    else snprintf(resize, sizeof resize, "no Resize");
    if (p->crop_h) snprintf(crop, sizeof crop, "CenterCrop([%d, %d])", p->crop_h, p->crop_w);
    else snprintf(crop, sizeof crop, "no CenterCrop");
    snprintf(buf, n, "%s, %s, %s pixels 0 to %d, Normalize(mean=[%g, %g, %g], std=[%g, %g, %g])", resize, crop,
             p->bgr ? "BGR" : "RGB", p->scale, p->mean[0], p->mean[1], p->mean[2], p->std[0], p->std[1], p->std[2]);
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

/* Horizontal pass over source rows [r0, r1) into the window's columns: each
 * output pixel sums its taps over the three channels at once. */
static void resample_horizontal(const uint8_t *src, int w, const otl_resample_plan *pl, uint8_t *dst) {
    const int out_w = pl->x1 - pl->x0, stride = pl->hk + 2;
    for (int y = pl->r0; y < pl->r1; y++) {
        const uint8_t *row = src + (size_t)y * w * 3;
        uint8_t *out = dst + (size_t)(y - pl->r0) * out_w * 3;
        for (int j = 0; j < out_w; j++, out += 3) {
            const int32_t *c = pl->h_taps + (size_t)j * stride, *k = c + 2;
            const uint8_t *p = row + (size_t)c[0] * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < c[1]; x++, p += 3) {
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

/* Vertical pass into the window's rows from src, which holds source rows
 * from r0 on: whole rows are accumulated tap by tap, so memory is read in
 * order. */
static void resample_vertical(const uint8_t *src, const otl_resample_plan *pl, uint8_t *dst, int32_t *acc) {
    const size_t row_bytes = (size_t)(pl->x1 - pl->x0) * 3;
    const int stride = pl->vk + 2;
    for (int j = 0; j < pl->y1 - pl->y0; j++) {
        const int32_t *c = pl->v_taps + (size_t)j * stride, *k = c + 2;
#pragma omp simd
        for (size_t i = 0; i < row_bytes; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < c[1]; t++) {
            const uint8_t *row = src + (size_t)(c[0] - pl->r0 + t) * row_bytes;
            const int32_t kt = k[t];
#pragma omp simd
            for (size_t i = 0; i < row_bytes; i++) acc[i] += row[i] * kt;
        }
        uint8_t *out = dst + (size_t)j * row_bytes;
#pragma omp simd
        for (size_t i = 0; i < row_bytes; i++) out[i] = clip8(acc[i]);
    }
}

/* Copies the window's columns of rows [r0, r1): the horizontal pass when the width does not change. */
static void copy_columns(const uint8_t *src, int w, const otl_resample_plan *pl, uint8_t *dst) {
    const size_t bytes = (size_t)(pl->x1 - pl->x0) * 3;
    for (int y = pl->r0; y < pl->r1; y++)
        memcpy(dst + (size_t)(y - pl->r0) * bytes, src + ((size_t)y * w + (size_t)pl->x0) * 3, bytes);
}

/* Resizes RGB8 as Pillow does, horizontal pass first, keeping only the
 * plan's window: out is (x1 - x0) x (y1 - y0). */
static onnxtl_status *resize_rgb(const otl_image *in, const otl_resample_plan *pl, otl_image *out) {
    const int win_w = pl->x1 - pl->x0, win_h = pl->y1 - pl->y0;
    uint8_t *tmp = malloc((size_t)win_w * (size_t)(pl->r1 - pl->r0) * 3 + 1);
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)win_w * 3 + 1);
    out->rgb = malloc((size_t)win_w * (size_t)win_h * 3 + 1);
    onnxtl_status *st = tmp && acc && out->rgb ? NULL : otl_nomem();
    if (!st) {
        out->width = win_w;
        out->height = win_h;
        if (pl->hk) resample_horizontal(in->rgb, in->width, pl, tmp);
        else copy_columns(in->rgb, in->width, pl, tmp);
        if (pl->vk) resample_vertical(tmp, pl, out->rgb, acc);
        else memcpy(out->rgb, tmp, (size_t)win_w * (size_t)win_h * 3);
    }
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

/* The window's taps along one axis: per output index in [lo, hi), its first
 * source index, count and k weights, into taps (stride k + 2). */
static void copy_taps(const resample_coeffs *c, int lo, int hi, int32_t *taps) {
    for (int o = lo; o < hi; o++, taps += c->ksize + 2) {
        taps[0] = c->bounds[2 * o];
        taps[1] = c->bounds[2 * o + 1];
        memcpy(taps + 2, c->kk + (size_t)o * c->ksize, sizeof(int32_t) * (size_t)c->ksize);
    }
}

static onnxtl_status *plan_taps(otl_resample_plan *pl, int w, int h) {
    resample_coeffs hc = {0}, vc = {0};
    onnxtl_status *st = NULL;
    const size_t win_w = (size_t)(pl->x1 - pl->x0), win_h = (size_t)(pl->y1 - pl->y0);
    if (pl->resized_w != w) OTL_TRY_GOTO(st, precompute_coeffs(w, pl->resized_w, &hc), done);
    if (pl->resized_h != h) OTL_TRY_GOTO(st, precompute_coeffs(h, pl->resized_h, &vc), done);
    pl->hk = hc.ksize, pl->vk = vc.ksize;
    pl->h_taps = malloc(sizeof(int32_t) * (win_w * (size_t)(pl->hk + 2) + win_h * (size_t)(pl->vk + 2)) + 1);
    if (!pl->h_taps) {
        st = otl_nomem();
        goto done;
    }
    pl->v_taps = pl->h_taps + win_w * (size_t)(pl->hk + 2);
    if (pl->hk) copy_taps(&hc, pl->x0, pl->x1, pl->h_taps);
    if (pl->vk) {
        copy_taps(&vc, pl->y0, pl->y1, pl->v_taps);
        pl->r0 = vc.bounds[2 * pl->y0];
        pl->r1 = vc.bounds[2 * (pl->y1 - 1)] + vc.bounds[2 * (pl->y1 - 1) + 1];
    }
done:
    free_coeffs(&hc);
    free_coeffs(&vc);
    return st;
}

onnxtl_status *otl_resample_plan_make(const otl_preprocess *p, int w, int h, otl_resample_plan *pl) {
    memset(pl, 0, sizeof *pl);
    resized_size(p, w, h, &pl->resized_w, &pl->resized_h);
    const int rw = pl->resized_w, rh = pl->resized_h;
    pl->crop_h = p->crop_h ? p->crop_h : rh, pl->crop_w = p->crop_w ? p->crop_w : rw;
    pl->top = crop_start(rh, pl->crop_h), pl->left = crop_start(rw, pl->crop_w);
    pl->x0 = pl->left < 0 ? 0 : pl->left, pl->y0 = pl->top < 0 ? 0 : pl->top;
    pl->x1 = pl->left + pl->crop_w > rw ? rw : pl->left + pl->crop_w;
    pl->y1 = pl->top + pl->crop_h > rh ? rh : pl->top + pl->crop_h;
    pl->r0 = pl->y0, pl->r1 = pl->y1;
    return plan_taps(pl, w, h);
}

void otl_resample_plan_free(otl_resample_plan *pl) {
    free(pl->h_taps);
    memset(pl, 0, sizeof *pl);
}

/* CenterCrop fused with ToTensor and Normalize, reading src: the plan's
 * window of the resized image.  A byte has 256 values, so each channel's
 * (v / 255 - mean) / std -- the same float32 operations as ToTensor and
 * Normalize -- is computed once per value; with scale 255 it is
 * (v - mean) / std.  Output channel c reads the image's channel c, or
 * 2 - c for a BGR network; a CHW output has channel planes, an HWC one
 * interleaves them. */
typedef struct {
    float table[3][256];
    int source[3];               /* per output channel: the RGB channel it reads */
    size_t pixel_step, channel_step; /* between pixels and channels of the output */
} normalizer;

static void normalizer_init(const otl_preprocess *p, int ch, int cw, bool hwc, normalizer *n) {
    for (int c = 0; c < 3; c++) {
        n->source[c] = p->bgr ? 2 - c : c;
        for (int v = 0; v < 256; v++)
            n->table[c][v] = ((p->scale == 255 ? (float)v : (float)v / 255.0f) - p->mean[c]) / p->std[c];
    }
    n->pixel_step = hwc ? 3 : 1;
    n->channel_step = hwc ? 1 : (size_t)ch * (size_t)cw;
}

static void put_pixel(const normalizer *n, const uint8_t *rgb, float *out) {
    for (int c = 0; c < 3; c++) out[c * n->channel_step] = n->table[c][rgb[n->source[c]]];
}

static void crop_normalize(const otl_preprocess *p, const otl_image *src, const otl_resample_plan *pl, bool hwc,
                           float *out) {
    const int ch = pl->crop_h, cw = pl->crop_w;
    static const uint8_t black[3] = {0, 0, 0}; /* the padding, zeros before ToTensor */
    normalizer n;
    normalizer_init(p, ch, cw, hwc, &n);
    for (int y = 0; y < ch; y++) {
        const int sy = y + pl->top;
        const bool row_inside = sy >= pl->y0 && sy < pl->y1;
        /* the crop's columns inside the image */
        const int x_begin = row_inside ? pl->x0 - pl->left : cw, x_end = row_inside ? pl->x1 - pl->left : cw;
        float *row = out + (size_t)y * cw * n.pixel_step;
        const uint8_t *px = row_inside ? src->rgb + ((size_t)(sy - pl->y0) * src->width + (size_t)(x_begin + pl->left - pl->x0)) * 3 : NULL;
        for (int x = 0; x < cw; x++) {
            const bool inside = x >= x_begin && x < x_end;
            put_pixel(&n, inside ? px + (size_t)(x - x_begin) * 3 : black, row + (size_t)x * n.pixel_step);
        }
    }
}

onnxtl_status *otl_preprocess_image(const otl_preprocess *p, const otl_image *img, bool hwc, float *out) {
    otl_resample_plan pl;
    OTL_TRY(otl_resample_plan_make(p, img->width, img->height, &pl));
    otl_image window = {0};
    onnxtl_status *st = NULL;
    if (pl.hk || pl.vk) {
        st = resize_rgb(img, &pl, &window);
    } else { /* no resize: the window is read in place */
        window = *img;
        window.rgb = img->rgb + ((size_t)pl.y0 * img->width + (size_t)pl.x0) * 3;
    }
    if (!st) crop_normalize(p, &window, &pl, hwc, out);
    if (pl.hk || pl.vk) otl_image_free(&window);
    otl_resample_plan_free(&pl);
    return st;
}
