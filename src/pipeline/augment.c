#include "augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mix64.h"
#include "status.h"

onnxtl_status *otl_augment_parse(const char *text, otl_augment *a) {
    a->crop = a->flip = false;
    for (const char *p = text; *p;) {
        const size_t n = strcspn(p, ",");
        if (n == 4 && !strncmp(p, "flip", 4)) a->flip = true;
        else if (n == 4 && !strncmp(p, "crop", 4)) a->crop = true;
        else return otl_error(ONNXTL_ERR_ARG, "--augment takes flip and crop, comma-separated, not '%s'", text);
        p += n + (p[n] == ',');
    }
    return a->crop || a->flip ? NULL : otl_error(ONNXTL_ERR_ARG, "--augment needs flip, crop or both");
}

const char *otl_augment_name(const otl_augment *a) {
    return a->flip && a->crop ? "flip,crop" : a->flip ? "flip" : a->crop ? "crop" : "none";
}

/* The image's stream of uniform draws in [0, 1). */
typedef struct {
    uint64_t key, n;
} draws;

static double uniform(draws *d) { return (double)(otl_mix64(d->key + 0x9e3779b97f4a7c15ull * ++d->n) >> 11) * 0x1.0p-53; }

/* An integer in [0, n]: torch.randint(0, n + 1). */
static int pick(draws *d, int n) {
    const int k = (int)(uniform(d) * (n + 1));
    return k > n ? n : k;
}

/* torchvision's RandomResizedCrop.get_params. */
static void crop_box(draws *d, int w, int h, otl_augment_draw *out) {
    const double area = (double)w * h, log_lo = log(3.0 / 4.0), log_hi = log(4.0 / 3.0);
    for (int attempt = 0; attempt < 10; attempt++) {
        const double target = area * (0.08 + uniform(d) * (1.0 - 0.08));
        const double aspect = exp(log_lo + uniform(d) * (log_hi - log_lo));
        const int cw = (int)lround(sqrt(target * aspect)), ch = (int)lround(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            out->top = pick(d, h - ch), out->left = pick(d, w - cw);
            out->width = cw, out->height = ch, out->cropped = true;
            return;
        }
    }
    const double ratio = (double)w / h; /* the fallback: a centre crop at the nearest allowed ratio */
    int cw = w, ch = h;
    if (ratio < 3.0 / 4.0) ch = (int)lround(w / (3.0 / 4.0));
    else if (ratio > 4.0 / 3.0) cw = (int)lround(h * (4.0 / 3.0));
    *out = (otl_augment_draw){true, (w - cw) / 2, (h - ch) / 2, cw, ch, false};
}

otl_augment_draw otl_augment_draws(const otl_augment *a, uint64_t epoch, uint64_t image, int w, int h) {
    draws d = {otl_mix64(a->seed ^ otl_mix64(epoch * 0x2545f4914f6cdd1dull + image)), 0};
    otl_augment_draw out = {false, 0, 0, w, h, false};
    if (a->crop) crop_box(&d, w, h, &out);
    out.flipped = a->flip && uniform(&d) < 0.5;
    return out;
}

/* Mirrors each row of a 3-channel image of h x w, planar or interleaved. */
static void mirror(float *x, int h, int w, bool hwc) {
    const size_t planes = hwc ? 1 : 3, px = hwc ? 3 : 1;
    for (size_t c = 0; c < planes; c++)
        for (int y = 0; y < h; y++) {
            float *row = x + (c * (size_t)h + (size_t)y) * (size_t)w * px;
            for (int l = 0, r = w - 1; l < r; l++, r--)
                for (size_t k = 0; k < px; k++) {
                    const float t = row[(size_t)l * px + k];
                    row[(size_t)l * px + k] = row[(size_t)r * px + k];
                    row[(size_t)r * px + k] = t;
                }
        }
}

/* The box of img, resized to out_h x out_w with p's resampling and normalisation. */
static onnxtl_status *resized_crop(const otl_preprocess *p, const otl_augment_draw *d, const otl_image *img, int out_h,
                                   int out_w, bool hwc, float *out) {
    otl_preprocess resized = *p;
    resized.resize_short = 0, resized.resize_w = out_w, resized.resize_h = out_h;
    resized.crop_w = resized.crop_h = 0;
    otl_image box = {d->width, d->height, malloc((size_t)d->width * (size_t)d->height * 3 + 1)};
    if (!box.rgb) return otl_nomem();
    for (int y = 0; y < d->height; y++)
        memcpy(box.rgb + (size_t)y * d->width * 3, img->rgb + ((size_t)(d->top + y) * img->width + (size_t)d->left) * 3,
               (size_t)d->width * 3);
    onnxtl_status *st = otl_preprocess_image(&resized, &box, hwc, out);
    otl_image_free(&box);
    return st;
}

onnxtl_status *otl_augment_image(const otl_preprocess *p, const otl_augment_draw *d, const otl_image *img, int out_h,
                                 int out_w, bool hwc, float *out) {
    OTL_TRY(d->cropped ? resized_crop(p, d, img, out_h, out_w, hwc, out) : otl_preprocess_image(p, img, hwc, out));
    if (d->flipped) mirror(out, out_h, out_w, hwc);
    return NULL;
}
