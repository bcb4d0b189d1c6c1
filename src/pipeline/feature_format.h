/* The features file's layout, shared by its writer and its reader (the
 * README documents the format under "The features file"). */
#ifndef OTL_FEATURE_FORMAT_H
#define OTL_FEATURE_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "feature_file.h"
#include "hash.h"
#include "onnxtl_base.h"

static const char otl_features_magic[8] = {'O', 'T', 'L', 'F', 'E', 'A', 'T', '1'};
enum { FLAG_COMPLETE = 1, HEADER_BYTES = 128, ROW_TRAILER = 16 };

/* Fixed little-endian header at offset 0 (the README documents the format). */
typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t flags;
    uint64_t meta_bytes;
    uint64_t rows_offset;
    uint64_t n_rows;
    uint32_t dim;
    uint32_t row_bytes;
    uint64_t split_rows[SPLIT_COUNT];
    uint32_t meta_crc;
    uint32_t header_crc; /* CRC-32C of the bytes before it */
    uint8_t reserved[40];
} file_header;
_Static_assert(sizeof(file_header) == HEADER_BYTES, "header layout");

/* The 16 bytes after a row's features. */
typedef struct {
    uint32_t image;
    int32_t label;
    uint8_t split;
    uint8_t view; /* extract --views: which of the training image's augmented views; else 0 */
    uint8_t pad[2];
    uint32_t crc; /* CRC-32C of the row's features and the fields above */
} row_trailer;
_Static_assert(sizeof(row_trailer) == ROW_TRAILER, "row layout");

/* A stored row's dim values as floats (widened from float16). */
static inline void otl_stored_to_floats(const unsigned char *row, int dtype, uint32_t dim, float *dst) {
    if (dtype == ONNXTL_FLOAT16) otl_halves_to_floats(row, dst, dim);
    else memcpy(dst, row, sizeof(float) * dim);
}

static inline uint64_t rows_offset_for(uint64_t meta_bytes) { return (HEADER_BYTES + meta_bytes + 63) & ~(uint64_t)63; }
static inline size_t value_bytes_of(int dtype) { return dtype == ONNXTL_FLOAT16 ? 2 : 4; }
static inline size_t row_bytes_for(uint32_t dim, int dtype) { return (size_t)dim * value_bytes_of(dtype) + ROW_TRAILER; }
static inline uint32_t header_crc(const file_header *h) { return otl_crc32c(h, offsetof(file_header, header_crc)); }

/* An open file, mapped (feature_reader.c). */
struct otl_features {
    char *path;
    const unsigned char *map;
    size_t size;
    file_header h;
    otl_features_meta meta;
};

/* Parses the metadata block (feature_meta.c). */
onnxtl_status *otl_features_meta_parse(const char *text, size_t len, otl_features_meta *m);

/* Counts one row into stats (sized for stats->n_classes). */
void otl_features_stats_add(otl_features_stats *s, const float *x, uint32_t dim, const otl_row_tag *tag);
onnxtl_status *otl_features_stats_init(otl_features_stats *s, int n_classes);

#endif
