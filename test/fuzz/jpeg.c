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
    int h = 0, w = 0;
    if (!st && !otl_preprocess_fixed_size(&p, &h, &w)) h = img.height, w = img.width;
    /* Without a crop the output is the image's size, which extract never batches: kept small here. */
    float *out = st || (int64_t)h * w > (1 << 22) ? NULL : malloc(sizeof(float) * 3 * (size_t)h * (size_t)w);
    if (out) st = otl_preprocess_image(&p, &img, data[0] & 0x80, out);
    free(out);
    otl_image_free(&img);
    fuzz_drop(st);
    return 0;
}
