/* JPEG decoding and preprocessing: the first byte picks one of the resize,
 * crop, channel order, pixel scale and layout variants; the rest is the file. */
#include <stdlib.h>

#include "fuzz.h"
#include "preprocess.h"

static const otl_preprocess_spec variants[] = {
    {"256", "224", NULL, NULL, NULL, NULL},     {"none", "224", NULL, NULL, "bgr", "255"},
    {"64x64", "none", "0.5", "0.5", NULL, NULL}, {"7", "9x5", NULL, NULL, NULL, NULL},
    {"1", "1", NULL, NULL, "bgr", NULL},        {"none", "none", NULL, NULL, NULL, "255"},
    {"300x20", "320x30", NULL, NULL, NULL, NULL}, {"33", "none", NULL, NULL, NULL, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static otl_jpeg_decoder *d; /* one for the process, as each decoding thread keeps one */
    if (!d && otl_jpeg_decoder_create(0, &d)) abort();
    const int v = data[0] % (int)(sizeof variants / sizeof *variants);
    otl_preprocess p;
    otl_preprocess_default(&p);
    if (otl_preprocess_parse(&p, &variants[v])) abort(); /* the variants are valid */
    otl_image img;
    onnxtl_status *st = otl_jpeg_decode(d, data + 1, size - 1, "fuzz.jpg", &img);
    /* The output's size is the plan's crop (without one, the resized image,
     * which extract never batches: kept small here). */
    otl_resample_plan plan = {0};
    if (!st) st = otl_resample_plan_make(&p, img.width, img.height, &plan);
    const int64_t pixels = st ? 0 : (int64_t)plan.crop_h * plan.crop_w;
    otl_resample_plan_free(&plan);
    float *out = !st && pixels <= (1 << 22) ? malloc(sizeof(float) * 3 * (size_t)pixels) : NULL;
    if (out) st = otl_preprocess_image(&p, &img, data[0] & 0x80, out);
    free(out);
    otl_image_free(&img);
    fuzz_drop(st);
    return 0;
}
