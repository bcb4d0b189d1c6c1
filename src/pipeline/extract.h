/* Image folders to a features file: the backbone runs once per image. */
#ifndef OTL_EXTRACT_H
#define OTL_EXTRACT_H

#include <stdatomic.h>

#include "events.h"
#include "feature_file.h"

typedef struct {
    const char *model_path, *data_dir, *out_path;
    const char *cut; /* NULL: the tensor that feeds the classifier head */
    int dtype;       /* of the stored features: ONNXTL_FLOAT or ONNXTL_FLOAT16 */
    int views;       /* rows per training image: 1, or K views augmented as augment says (seeded) */
    otl_augment augment;
    otl_preprocess_spec pre; /* the user's preprocessing, over the model's and torchvision's defaults */
    int batch, decoders;
    int64_t max_pixels; /* the largest JPEG accepted (0: OTL_DEFAULT_MAX_PIXELS) */
    int streams; /* batches in flight, each on its own session; 0: one */
    onnxtl_options session; /* threads, device, precision and log of each session */
    size_t calibrate; /* --precision int8: images in the calibration sample; 0: OTL_CALIBRATE_DEFAULT */
    int shard_k, shard_n; /* 1-based shard of n */
    bool strict, restart;
    const otl_events *events; /* progress, what is extracted, skipped images */
    /* Set, by a signal handler say (a lock-free atomic is async-signal-safe
     * and seen by every thread), to stop once the current batch's rows are
     * written and synced: the run ends with an error saying how to resume.
     * NULL: never. */
    const atomic_int *interrupt;
} otl_extract_options;

typedef struct {
    size_t images;   /* in this shard */
    size_t resumed;  /* images whose rows an earlier, interrupted run wrote */
    size_t skipped;  /* unreadable or corrupt images */
    size_t ignored;  /* files that are not images by name */
    double seconds, images_per_second; /* through the backbone: rows per second with --views */
    bool already_complete;
    otl_features_stats stats; /* of the finished file's rows */
    char **classes;           /* their names, stats.n_classes of them */
} otl_extract_result;

onnxtl_status *otl_extract(const otl_extract_options *o, otl_extract_result *r);
void otl_extract_result_free(otl_extract_result *r);

#endif
