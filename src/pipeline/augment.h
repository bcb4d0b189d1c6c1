/* Training-time augmentation of decoded images, as torchvision's
 * RandomResizedCrop (scale 0.08 to 1, ratio 3/4 to 4/3, ten tries, then a
 * centre crop; the box resized to the network's input as Resize resizes)
 * and RandomHorizontalFlip (p 0.5).  Each image's draws are a hash of
 * (seed, epoch, image), not of the order threads decode in, so a run is
 * reproducible whatever the number of decoders. */
#ifndef OTL_AUGMENT_H
#define OTL_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "preprocess.h"

typedef struct {
    bool crop, flip;
    uint64_t seed;
} otl_augment;

/* Parses "flip", "crop", "flip,crop" (in any order). */
onnxtl_status *otl_augment_parse(const char *text, otl_augment *a);
/* The list otl_augment_parse reads back ("flip,crop"), or "none". */
const char *otl_augment_name(const otl_augment *a);

/* What the draws of one image decided. */
typedef struct {
    bool cropped;                 /* else the preprocessing's own resize and crop apply */
    int left, top, width, height; /* the crop box in the decoded image */
    bool flipped;
} otl_augment_draw;

/* The draws for image `image` of epoch `epoch` of a w x h picture. */
otl_augment_draw otl_augment_draws(const otl_augment *a, uint64_t epoch, uint64_t image, int w, int h);

/* The network input for img under draw d: the box resized to out_h x out_w
 * (in place of p's own resize and crop) when d is cropped, else p's resize
 * and crop; p's resampling and normalisation; then mirrored if d says so.
 * out as otl_preprocess_image's. */
onnxtl_status *otl_augment_image(const otl_preprocess *p, const otl_augment_draw *d, const otl_image *img, int out_h,
                                 int out_w, bool hwc, float *out);

#endif
