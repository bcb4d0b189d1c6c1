/* Labelled image folders: ImageFolder with or without splits, or Kaggle's flat layout. */
#ifndef OTL_DATASET_H
#define OTL_DATASET_H

#include <stddef.h>

#include "onnxtl.h"
#include "strlist.h"

enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST, SPLIT_ALL, SPLIT_COUNT };
extern const char *const otl_split_names[SPLIT_COUNT];

typedef enum { LAYOUT_SPLITS, LAYOUT_FOLDERS, LAYOUT_FLAT } otl_layout;

typedef struct {
    char *path; /* relative to the data folder */
    int label;
    int split;
} otl_sample;

typedef struct {
    char *root;
    otl_layout layout;
    char **classes; /* sorted, as torchvision's ImageFolder assigns indices */
    int n_classes;
    otl_sample *samples; /* split, then class, then path order */
    size_t n_samples;
    size_t ignored; /* files that are not images by their name (.DS_Store, Thumbs.db, ...) */
    otl_strlist unrecordable; /* images whose names hold a tab or a newline, which the features
                               * file's text cannot record: skipped, for the caller to warn about */
} otl_dataset;

onnxtl_status *otl_dataset_scan(const char *root, otl_dataset **out);
void otl_dataset_free(otl_dataset *ds);

/* The full paths (root/path) of the samples listed in indices, or of every
 * sample when indices is NULL, appended to out. */
onnxtl_status *otl_dataset_paths(const otl_dataset *ds, const size_t *indices, size_t n, otl_strlist *out);
const char *otl_layout_name(otl_layout l);

#endif
