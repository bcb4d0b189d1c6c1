/* Writes onnxtl's preprocessed tensor for each image, for comparison with
 * torchvision's transforms in test/preprocess_parity.py.
 *
 * usage: test_preprocess_dump OUT_DIR RESIZE CROP MEAN STD IMAGE...
 * writes OUT_DIR/<i>.npy (float32, 3 x H x W) per image, or OUT_DIR/<i>.err.
 * With OTL_DUMP_AUGMENT (flip, crop or flip,crop) and OTL_DUMP_SEED, image i
 * is augmented with epoch 1's draws for image i, which OUT_DIR/<i>.box
 * records ("cropped left top width height flipped"); with OTL_DUMP_DRAWS=
 * "N WxH" too, only the draws of N images of W x H are printed, one a line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "npy.h"
#include "preprocess.h"
#include "status.h"

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s OUT_DIR RESIZE CROP MEAN STD IMAGE...\n", argv[0]);
        return 2;
    }
    otl_preprocess p;
    otl_preprocess_default(&p);
    otl_jpeg_decoder *d;
    /* optional: CHANNELS SCALE LAYOUT as environment, so the argument list stays one of images */
    const char *layout = getenv("OTL_DUMP_LAYOUT");
    const bool hwc = layout && !strcmp(layout, "hwc");
    const otl_preprocess_spec spec = {argv[2], argv[3], argv[4], argv[5], getenv("OTL_DUMP_CHANNELS"),
                                      getenv("OTL_DUMP_SCALE")};
    onnxtl_status *st = otl_preprocess_parse(&p, &spec);
    if (!st) st = otl_jpeg_decoder_create(0, &d);
    if (st) {
        fprintf(stderr, "%s\n", onnxtl_status_message(st));
        return 1;
    }
    const char *augment = getenv("OTL_DUMP_AUGMENT"), *seed = getenv("OTL_DUMP_SEED"), *draws = getenv("OTL_DUMP_DRAWS");
    otl_augment aug = {0};
    if (!st && augment) st = otl_augment_parse(augment, &aug);
    if (st) {
        fprintf(stderr, "%s\n", onnxtl_status_message(st));
        return 1;
    }
    aug.seed = seed ? strtoull(seed, NULL, 10) : 0;
    int n_draws, dw, dh;
    if (augment && draws && sscanf(draws, "%d %dx%d", &n_draws, &dw, &dh) == 3) {
        for (int i = 0; i < n_draws; i++) {
            const otl_augment_draw dr = otl_augment_draws(&aug, 1, (uint64_t)i, dw, dh);
            printf("%d %d %d %d %d %d\n", dr.cropped, dr.left, dr.top, dr.width, dr.height, dr.flipped);
        }
        otl_jpeg_decoder_release(d);
        return 0;
    }
    for (int i = 6; i < argc; i++) {
        otl_image img;
        char out[4096];
        st = otl_jpeg_load(d, argv[i], &img);
        int h = 0, w = 0;
        otl_resample_plan plan = {0};
        if (!st) st = otl_resample_plan_make(&p, img.width, img.height, &plan); /* its crop is the output */
        if (!st) h = plan.crop_h, w = plan.crop_w;
        otl_resample_plan_free(&plan);
        float *chw = st ? NULL : malloc(sizeof(float) * 3 * (size_t)h * (size_t)w);
        if (!st && !chw) st = otl_nomem();
        const otl_augment_draw dr = st ? (otl_augment_draw){0} : otl_augment_draws(&aug, 1, (uint64_t)(i - 6), img.width,
                                                                                  img.height);
        if (!st && augment) st = otl_augment_image(&p, &dr, &img, h, w, hwc, chw);
        else if (!st) st = otl_preprocess_image(&p, &img, hwc, chw);
        if (!st && augment) {
            snprintf(out, sizeof out, "%s/%d.box", argv[1], i - 6);
            FILE *f = fopen(out, "w");
            if (f) fprintf(f, "%d %d %d %d %d %d\n", dr.cropped, dr.left, dr.top, dr.width, dr.height, dr.flipped), fclose(f);
        }
        if (!st) {
            snprintf(out, sizeof out, "%s/%d.npy", argv[1], i - 6);
            onnxtl_tensor t = {.dtype = ONNXTL_FLOAT, .rank = 3, .dims = {hwc ? h : 3, hwc ? w : h, hwc ? 3 : w}, .data = chw};
            st = otl_npy_write(out, &t);
        }
        if (st) {
            snprintf(out, sizeof out, "%s/%d.err", argv[1], i - 6);
            FILE *f = fopen(out, "w");
            if (f) fprintf(f, "%s\n", onnxtl_status_message(st)), fclose(f);
            onnxtl_status_release(st);
        }
        free(chw);
        otl_image_free(&img);
    }
    otl_jpeg_decoder_release(d);
    return 0;
}
