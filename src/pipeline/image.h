/* JPEG decoding to 8-bit RGB, matching PIL's Image.open(...).convert('RGB'). */
#ifndef OTL_IMAGE_H
#define OTL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxtl.h"

typedef struct {
    int width, height;
    uint8_t *rgb; /* height x width x 3, owned */
} otl_image;

typedef struct otl_jpeg_decoder otl_jpeg_decoder; /* one per thread */

/* A JPEG whose header declares more than max_pixels (0: the default, about
 * 100 megapixels) is refused before anything is allocated for it: a
 * decompression bomb is a few kilobytes that claim gigabytes. */
#define OTL_DEFAULT_MAX_PIXELS ((int64_t)100000000)
onnxtl_status *otl_jpeg_decoder_create(int64_t max_pixels, otl_jpeg_decoder **out);
void otl_jpeg_decoder_release(otl_jpeg_decoder *d);

/* Decodes a JPEG held in memory.  Grayscale becomes R=G=B; CMYK is converted
 * as PIL does.  Truncated or corrupt data is an error, not a gray patch.
 * Errors name the path. */
onnxtl_status *otl_jpeg_decode(otl_jpeg_decoder *d, const uint8_t *buf, size_t len,
                               const char *path, otl_image *img);
/* Reads and decodes a file. */
onnxtl_status *otl_jpeg_load(otl_jpeg_decoder *d, const char *path, otl_image *img);

void otl_image_free(otl_image *img);

/* A JPEG of the image at path shrunk to fit max_side (box filter, quality
 * 80), for reports; *jpeg is malloc'd. */
onnxtl_status *otl_jpeg_thumbnail(otl_jpeg_decoder *d, const char *path, int max_side, uint8_t **jpeg, size_t *len);

#endif
