/* torchvision-exact preprocessing: Resize (PIL bilinear with antialiasing),
 * CenterCrop, ToTensor and Normalize, into a CHW float tensor. */
#ifndef OTL_PREPROCESS_H
#define OTL_PREPROCESS_H

#include <stdbool.h>

#include "image.h"

typedef struct {
    int resize_short; /* Resize(N): shorter side to N; 0 when unused */
    int resize_w, resize_h; /* Resize([H, W]); 0 when unused */
    int crop_w, crop_h;     /* CenterCrop; 0 for none */
    float mean[3], std[3];
} otl_preprocess;

/* torchvision's ImageNet evaluation transform: Resize(256), CenterCrop(224), ImageNet mean/std. */
void otl_preprocess_default(otl_preprocess *p);

/* Parses the CLI forms: resize "256" | "64x64" (H x W) | "none"; crop "224" | "HxW" | "none";
 * mean/std "a,b,c" (one value applies to all three channels). NULL leaves a field as is. */
onnxtl_status *otl_preprocess_parse(otl_preprocess *p, const char *resize, const char *crop,
                                    const char *mean, const char *std);

/* Output height and width; false when images of different sizes would not batch. */
bool otl_preprocess_fixed_size(const otl_preprocess *p, int *h, int *w);

/* Writes 3 x out_h x out_w floats to chw. */
onnxtl_status *otl_preprocess_image(const otl_preprocess *p, const otl_image *img, float *chw);

/* The four CLI-form strings (resize, crop, mean, std) that otl_preprocess_parse reads back. */
typedef struct {
    char resize[32], crop[32], mean[64], std[64];
} otl_preprocess_text;
void otl_preprocess_to_text(const otl_preprocess *p, otl_preprocess_text *t);

/* One line describing the transform, e.g. for file headers and summaries. */
void otl_preprocess_describe(const otl_preprocess *p, char *buf, size_t n);

#endif
