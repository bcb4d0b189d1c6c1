#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "checked.h"
#include "status.h"

/* Larger images are refused rather than risk exhausting memory. */
#define MAX_FILE_BYTES ((size_t)1 << 30)

struct otl_jpeg_decoder {
    tjhandle tj;
    int64_t max_pixels;
    uint8_t *file_buf; /* reused across loads */
    size_t file_cap;
};

onnxtl_status *otl_jpeg_decoder_create(int64_t max_pixels, otl_jpeg_decoder **out) {
    otl_jpeg_decoder *d = calloc(1, sizeof *d);
    if (!d) return otl_nomem();
    d->max_pixels = max_pixels > 0 ? max_pixels : OTL_DEFAULT_MAX_PIXELS;
    if (!(d->tj = tjInitDecompress())) {
        free(d);
        return otl_error(ONNXTL_ERR_RUNTIME, "cannot initialise TurboJPEG: %s", tjGetErrorStr2(NULL));
    }
    *out = d;
    return NULL;
}

void otl_jpeg_decoder_release(otl_jpeg_decoder *d) {
    if (!d) return;
    tjDestroy(d->tj);
    free(d->file_buf);
    free(d);
}

void otl_image_free(otl_image *img) {
    free(img->rgb);
    img->rgb = NULL;
}

/* What a non-JPEG file most likely is, for the message. */
static const char *sniff_format(const uint8_t *b, size_t n) {
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "a PNG file (only JPEG is supported)";
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "a GIF file (only JPEG is supported)";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "a BMP file (only JPEG is supported)";
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "a WebP file (only JPEG is supported)";
    if (n < 2 || b[0] != 0xFF || b[1] != 0xD8) return "not a JPEG file";
    return NULL;
}

/* PIL reads CMYK JPEGs with Adobe's inverted convention, then converts
 * with out = (255 - K) - C * (255 - K) / 255, rounded as MULDIV255. */
static void cmyk_to_rgb(const uint8_t *cmyk, size_t pixels, uint8_t *rgb) {
    for (size_t i = 0; i < pixels; i++) {
        int nk = cmyk[4 * i + 3]; /* inverted K is 255 - k */
        for (int c = 0; c < 3; c++) {
            int v = 255 - cmyk[4 * i + c], t = v * nk + 128;
            int out = nk - (((t >> 8) + t) >> 8);
            rgb[3 * i + c] = (uint8_t)(out < 0 ? 0 : out > 255 ? 255 : out);
        }
    }
}

/* After a failed decode TurboJPEG 2.1's handle can keep failing on good
 * files, so each failure gets a fresh handle. */
static onnxtl_status *decode_failed(otl_jpeg_decoder *d, const char *path, const char *what) {
    onnxtl_status *st = otl_error(ONNXTL_ERR_FORMAT, "%s: %s: %s", path, what, tjGetErrorStr2(d->tj));
    tjDestroy(d->tj);
    d->tj = tjInitDecompress();
    return st;
}

onnxtl_status *otl_jpeg_decode(otl_jpeg_decoder *d, const uint8_t *buf, size_t len,
                               const char *path, otl_image *img) {
    memset(img, 0, sizeof *img);
    if (len == 0) return otl_error(ONNXTL_ERR_FORMAT, "%s: empty file", path);
    const char *other = sniff_format(buf, len);
    if (other) return otl_error(ONNXTL_ERR_FORMAT, "%s: %s", path, other);
    if (!d->tj) return otl_error(ONNXTL_ERR_RUNTIME, "%s: TurboJPEG could not be reinitialised", path);
    /* A header cut short can leave TurboJPEG's answers unset: they start out invalid. */
    int w = 0, h = 0, subsamp = -1, colorspace = -1;
    if (tjDecompressHeader3(d->tj, buf, (unsigned long)len, &w, &h, &subsamp, &colorspace) || subsamp < 0)
        return decode_failed(d, path, "corrupt JPEG header");
    if (w <= 0 || h <= 0) return otl_error(ONNXTL_ERR_FORMAT, "%s: unsupported JPEG size %dx%d", path, w, h);
    if ((int64_t)w * h > d->max_pixels)
        return otl_error(ONNXTL_ERR_FORMAT, "%s: the JPEG declares %dx%d pixels, more than --max-pixels %lld; "
                         "raise it if the image is genuine", path, w, h, (long long)d->max_pixels);
    bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    size_t pixels = (size_t)w * (size_t)h, channels = cmyk ? 4 : 3;
    uint8_t *raw = malloc(pixels * channels);
    if (!raw) return otl_nomem();
    /* Warnings (a truncated scan, corrupt data) stop decoding: PIL refuses such files too. */
    if (tjDecompress2(d->tj, buf, (unsigned long)len, raw, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB,
                      TJFLAG_STOPONWARNING)) {
        free(raw);
        return decode_failed(d, path, "corrupt or truncated JPEG");
    }
    if (cmyk) {
        uint8_t *rgb = malloc(pixels * 3);
        if (!rgb) {
            free(raw);
            return otl_nomem();
        }
        cmyk_to_rgb(raw, pixels, rgb);
        free(raw);
        raw = rgb;
    }
    img->width = w;
    img->height = h;
    img->rgb = raw;
    return NULL;
}

static onnxtl_status *read_whole(otl_jpeg_decoder *d, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    onnxtl_status *st = NULL;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = otl_error(ONNXTL_ERR_IO, "%s: not a readable regular file", path);
    } else if ((size_t)sb.st_size > MAX_FILE_BYTES) {
        st = otl_error(ONNXTL_ERR_FORMAT, "%s: file too large for an image (%lld bytes)", path,
                       (long long)sb.st_size);
    } else {
        *len = (size_t)sb.st_size;
        if (*len > d->file_cap) {
            uint8_t *b = realloc(d->file_buf, *len);
            if (!b) st = otl_nomem();
            else d->file_buf = b, d->file_cap = *len;
        }
        if (!st && *len && fread(d->file_buf, 1, *len, f) != *len)
            st = otl_error(ONNXTL_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    }
    fclose(f);
    return st;
}

onnxtl_status *otl_jpeg_load(otl_jpeg_decoder *d, const char *path, otl_image *img) {
    size_t len = 0;
    memset(img, 0, sizeof *img);
    OTL_TRY(read_whole(d, path, &len));
    return otl_jpeg_decode(d, d->file_buf, len, path, img);
}

/* Box-filtered: each thumbnail pixel is the mean of the source pixels it covers. */
static void shrink(const otl_image *img, int w, int h, uint8_t *out) {
    for (int y = 0; y < h; y++) {
        const int y0 = (int)((int64_t)y * img->height / h), y1 = (int)((int64_t)(y + 1) * img->height / h);
        for (int x = 0; x < w; x++) {
            const int x0 = (int)((int64_t)x * img->width / w), x1 = (int)((int64_t)(x + 1) * img->width / w);
            uint32_t sum[3] = {0}, n = 0;
            for (int sy = y0; sy < (y1 > y0 ? y1 : y0 + 1); sy++)
                for (int sx = x0; sx < (x1 > x0 ? x1 : x0 + 1); sx++, n++)
                    for (int c = 0; c < 3; c++) sum[c] += img->rgb[((size_t)sy * (size_t)img->width + (size_t)sx) * 3 + (size_t)c];
            for (int c = 0; c < 3; c++) out[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] = (uint8_t)((sum[c] + n / 2) / n);
        }
    }
}

onnxtl_status *otl_jpeg_thumbnail(otl_jpeg_decoder *d, const char *path, int max_side, uint8_t **jpeg, size_t *len) {
    otl_image img;
    OTL_TRY(otl_jpeg_load(d, path, &img));
    const int longest = img.width > img.height ? img.width : img.height;
    const int w = longest > max_side ? (int)((int64_t)img.width * max_side / longest) : img.width,
              h = longest > max_side ? (int)((int64_t)img.height * max_side / longest) : img.height;
    uint8_t *small = malloc((size_t)(w ? w : 1) * (size_t)(h ? h : 1) * 3);
    tjhandle tj = small ? tjInitCompress() : NULL;
    onnxtl_status *st = !small ? otl_nomem() : !tj ? otl_error(ONNXTL_ERR_RUNTIME, "cannot initialise TurboJPEG") : NULL;
    unsigned char *encoded = NULL;
    unsigned long n = 0;
    *jpeg = NULL;
    if (!st) {
        shrink(&img, w ? w : 1, h ? h : 1, small);
        if (tjCompress2(tj, small, w ? w : 1, 0, h ? h : 1, TJPF_RGB, &encoded, &n, TJSAMP_420, 80, 0) != 0)
            st = otl_error(ONNXTL_ERR_RUNTIME, "%s: cannot encode its thumbnail: %s", path, tjGetErrorStr2(tj));
        else if (!(*jpeg = malloc(n))) st = otl_nomem();
        else memcpy(*jpeg, encoded, n);
    }
    tjFree(encoded);
    *len = st ? 0 : n;
    if (tj) tjDestroy(tj);
    free(small);
    otl_image_free(&img);
    return st;
}
