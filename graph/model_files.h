/* The files a model is read from, mapped for as long as its graph lives: the
 * .onnx and the external-data files beside it, so that weights are used
 * where they lie instead of copied.
 *
 * The mappings are private and writable: a pass that rewrites a weight in
 * place (BatchNorm folding) gets its own copy of those pages from the kernel,
 * and the files never change.  A model must be replaced by a rename, as
 * onnxtl's own writers do, not rewritten while a graph maps it. */
#ifndef OTL_MODEL_FILES_H
#define OTL_MODEL_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    char *path; /* as resolved, so that a file is mapped once */
    uint8_t *bytes;
    size_t size;
} otl_mapped_file;

/* Maps a regular, non-empty file; errors name it. */
onnxtl_status *otl_map_file(const char *path, otl_mapped_file *out);
void otl_unmap_file(otl_mapped_file *f);

/* Gives back the whole pages inside [p, p + n) of a mapping whose contents
 * were copied elsewhere; reading them again reads the file. */
void otl_mapped_forget(const void *p, size_t n);

typedef struct {
    char *dir; /* external data must lie inside it; NULL for a model in memory, which has none */
    otl_mapped_file model;
    otl_mapped_file *external;
    int n_external, cap_external;
} otl_model_files;

/* Maps the .onnx at path; external data is then looked for in its folder. */
onnxtl_status *otl_model_files_open(otl_model_files *mf, const char *path);

/* The external-data file a tensor names by its location: a relative path
 * that stays inside the model's folder, symlinks resolved.  Each file is
 * mapped once, however many tensors it holds. */
onnxtl_status *otl_model_files_external(otl_model_files *mf, const char *tensor, const char *location,
                                        const otl_mapped_file **out);

/* Whether [p, p + n) lies inside one of the mapped files. */
bool otl_model_files_hold(const otl_model_files *mf, const void *p, size_t n);

void otl_model_files_release(otl_model_files *mf);

#endif
