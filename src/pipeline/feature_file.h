/* The features file: cached backbone outputs, one row per image.  The format
 * is documented in the README ("The features file").  Writing goes to FILE.partial and
 * ends with an atomic rename, so FILE is either absent or complete; an
 * interrupted extraction resumes from the partial file's last valid row. */
#ifndef OTL_FEATURE_FILE_H
#define OTL_FEATURE_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "augment.h"
#include "dataset.h"
#include "preprocess.h"

#define OTL_FEATURES_VERSION 1
#define OTL_FEATURES_MAX_HEAD 8
#define OTL_FEATURES_MAX_VIEWS 255

/* What the metadata block holds. */
typedef struct {
    char *model_path;
    char model_sha256[65];
    char *cut;
    char *head; /* shape of the classifier the cut removed, e.g. "2048x1000", or "" */
    int n_head_layers;                            /* those layers, parsed from head */
    int64_t head_layers[OTL_FEATURES_MAX_HEAD][2]; /* in and out of the first of them */
    uint32_t dim;
    int dtype; /* of the stored values: ONNXTL_FLOAT, or ONNXTL_FLOAT16 (extract --dtype fp16) */
    char compute[32]; /* the backbone's device and precision, "cpu fp32", "cpu bf16", "cuda fp16"; "" before it was recorded */
    char *int8_ranges; /* --precision int8: the calibration's "MIN<tab>MAX<tab>TENSOR" lines (graph/ranges.h); NULL otherwise */
    otl_preprocess pre;
    int shard_k, shard_n;
    int views;           /* rows per training image: 1, or extract --views K's augmented views ... */
    otl_augment augment; /* ... drawn so (the draws of view v are those of epoch v + 1) */
    char **classes;
    int n_classes;
    otl_sample *images; /* every image of the scan, in order; rows point into it */
    size_t n_images;
} otl_features_meta;

/* The stored value types, by the names the metadata and --dtype use
 * ("float32" or "fp32", "float16" or "fp16"). */
bool otl_features_dtype_parse(const char *name, int *dtype);
const char *otl_features_dtype_name(int dtype);

/* Serialises meta to text (malloc'ed, *len bytes). */
onnxtl_status *otl_features_meta_text(const otl_features_meta *m, char **text, size_t *len);
void otl_features_meta_free(otl_features_meta *m);

/* Rows an image of split has: views for training ones, else 1. */
static inline int otl_views_of(int views, int split) { return split == SPLIT_TRAIN || split == SPLIT_ALL ? views : 1; }

typedef struct {
    uint32_t image; /* index into meta.images */
    int32_t label;
    uint8_t split;
    uint8_t view; /* of a training image with meta.views of them; else 0 */
} otl_row_tag;

/* What the rows hold: counts per split and class, and the value range. */
typedef struct {
    uint64_t rows, split_rows[SPLIT_COUNT];
    uint64_t *class_rows; /* [split * n_classes + label] */
    int n_classes;
    double min, max, sum; /* over the finite values */
    uint64_t values, nonfinite;
} otl_features_stats;

void otl_features_stats_free(otl_features_stats *s);

typedef struct otl_features_writer otl_features_writer;

/* What the writer needs of the metadata to lay rows out and check them. */
typedef struct {
    uint32_t dim;
    int dtype;     /* ONNXTL_FLOAT or ONNXTL_FLOAT16 */
    int n_classes; /* labels run from 0 to n_classes - 1 */
    int views;     /* rows per training image */
} otl_features_layout;

/* Opens out_path.partial: resumes it when its metadata equals meta_text
 * (setting *next_image past the last image whose rows are all there), else
 * refuses unless restart is set. */
onnxtl_status *otl_features_writer_open(const char *out_path, const char *meta_text, size_t meta_len,
                                        const otl_features_layout *layout, bool restart, otl_features_writer **w,
                                        uint32_t *next_image, uint64_t *rows_done);
/* Appends n rows (n x dim floats), stored as the file's dtype: a finite
 * value that float16 cannot hold is refused.  They are written and synced
 * in the background while the caller goes on; an error in that shows at the
 * next append or at finish. */
onnxtl_status *otl_features_writer_append(otl_features_writer *w, const float *feats,
                                          const otl_row_tag *tags, size_t n);
/* Finalises the header, syncs, and renames the partial file into place;
 * *stats (if not NULL) receives the statistics of every row written,
 * resumed ones included, to be freed with otl_features_stats_free. */
onnxtl_status *otl_features_writer_finish(otl_features_writer *w, otl_features_stats *stats);
/* Closes without finishing: the partial file stays, to be resumed. */
void otl_features_writer_release(otl_features_writer *w);

typedef struct otl_features otl_features;

/* Maps a complete features file and validates its header and metadata.
 * Errors name the file and say what is wrong.  Rows are checked by
 * otl_features_check_rows, which every reader of the rows calls first. */
onnxtl_status *otl_features_open(const char *path, otl_features **out);
/* Every row's checksum and fields (split, image, label in range). */
onnxtl_status *otl_features_check_rows(const otl_features *f);
onnxtl_status *otl_features_stats_of(const otl_features *f, otl_features_stats *stats);
void otl_features_close(otl_features *f);
const otl_features_meta *otl_features_meta_of(const otl_features *f);
uint64_t otl_features_rows(const otl_features *f);
const uint64_t *otl_features_split_rows(const otl_features *f);
/* Row i's tag, and its dim values as floats (widened from float16 files). */
otl_row_tag otl_features_tag(const otl_features *f, uint64_t i);
void otl_features_values(const otl_features *f, uint64_t i, float *dst);
/* Whether every value of row i is finite. */
bool otl_features_finite(const otl_features *f, uint64_t i);
const char *otl_features_path(const otl_features *f);
/* The metadata text exactly as stored (*len bytes, not NUL-terminated). */
const char *otl_features_meta_raw(const otl_features *f, size_t *len);

/* The int8 ranges recorded by the extraction to out_path, finished or
 * interrupted (its .partial), so a resume quantises as it began; *text
 * (malloc'ed) is NULL when there is no such file or it records none. */
onnxtl_status *otl_features_recorded_ranges(const char *out_path, char **text);

/* Whether out_path, or a non-empty interrupted out_path.partial, exists. */
bool otl_features_output_exists(const char *out_path);

/* Metadata text without the shard line: equal for shards of one extraction. */
bool otl_features_same_extraction(const otl_features *a, const otl_features *b);
/* Writes a complete file from rows merged out of several (used by merge),
 * whose rows it checks first. */
onnxtl_status *otl_features_write_merged(const char *out_path, otl_features *const *in, int n);

#endif
