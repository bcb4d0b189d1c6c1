/* torchvision-exact preprocessing: Resize (PIL bilinear with antialiasing),
 * CenterCrop, ToTensor and Normalize, into a CHW float tensor. */
#ifndef OTL_PREPROCESS_H
#define OTL_PREPROCESS_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

typedef struct {
    int resize_short; /* Resize(N): shorter side to N; 0 when unused */
    int resize_w, resize_h; /* Resize([H, W]); 0 when unused */
    int crop_w, crop_h;     /* CenterCrop; 0 for none */
    float mean[3], std[3];  /* per channel of the network's input, in its order */
    bool bgr;               /* the network takes blue, green, red (Caffe-era and CoreML models) */
    int scale;              /* pixels before Normalize: 1 as ToTensor gives them (0 to 1), or 255 (0 to 255) */
} otl_preprocess;

/* torchvision's ImageNet evaluation transform: Resize(256), CenterCrop(224),
 * ToTensor (RGB, 0 to 1), ImageNet mean/std. */
void otl_preprocess_default(otl_preprocess *p);

/* Preprocessing as the CLI and metadata spell it: resize "256" | "64x64" (H x W) | "none";
 * crop "224" | "HxW" | "none"; mean/std "a,b,c" (one value applies to all three channels);
 * channels "rgb" | "bgr"; scale "1" | "255".  A NULL field leaves its setting as it is. */
typedef struct {
    const char *resize, *crop, *mean, *std, *channels, *scale;
} otl_preprocess_spec;
onnxtl_status *otl_preprocess_parse(otl_preprocess *p, const otl_preprocess_spec *s);

/* Output height and width; false when images of different sizes would not batch. */
bool otl_preprocess_fixed_size(const otl_preprocess *p, int *h, int *w);

/* Writes 3 x out_h x out_w floats, or out_h x out_w x 3 with hwc (a network that takes NHWC). */
onnxtl_status *otl_preprocess_image(const otl_preprocess *p, const otl_image *img, bool hwc, float *out);

/* How one w x h image becomes the network's input: Resize to resized_w x
 * resized_h, then the crop_w x crop_h crop at (left, top) (negative: zero
 * padding).  Only the window [x0, x1) x [y0, y1) of the resized image is
 * inside the crop, so only it is computed, from source rows [r0, r1).  Per
 * window column h_taps holds Pillow's first source column, tap count and hk
 * fixed-point weights (stride hk + 2), and v_taps the same per window row;
 * hk or vk is 0 where that axis keeps its size.  The CPU resampler uses it,
 * and it is what a resampler elsewhere (the GPU's) needs to match it. */
typedef struct {
    int resized_w, resized_h, crop_w, crop_h, top, left;
    int x0, y0, x1, y1, r0, r1;
    int hk, vk;
    int32_t *h_taps, *v_taps; /* one allocation */
} otl_resample_plan;

onnxtl_status *otl_resample_plan_make(const otl_preprocess *p, int w, int h, otl_resample_plan *plan);
void otl_resample_plan_free(otl_resample_plan *plan);

/* The CLI-form strings that otl_preprocess_parse reads back. */
typedef struct {
    char resize[32], crop[32], mean[64], std[64], channels[8], scale[8];
} otl_preprocess_text;
void otl_preprocess_to_text(const otl_preprocess *p, otl_preprocess_text *t);

/* One line describing the transform, e.g. for file headers and summaries. */
void otl_preprocess_describe(const otl_preprocess *p, char *buf, size_t n);

#endif
