/* NumPy .npy files (format versions 1-3, C order) to and from onnxtl_tensor. */
#ifndef OTL_NPY_H
#define OTL_NPY_H

#include <stdbool.h>
#include <stddef.h>

#include "onnxtl.h"

/* Reads path into t (t->data is malloc'ed; free it). */
onnxtl_status *otl_npy_read(const char *path, onnxtl_tensor *t);
/* Writes t to path atomically (temporary file, then rename). */
onnxtl_status *otl_npy_write(const char *path, const onnxtl_tensor *t);

/* Writing an array row by row, for data larger than memory. */
typedef struct otl_npy_stream otl_npy_stream;
onnxtl_status *otl_npy_stream_open(const char *path, const onnxtl_tensor *desc, otl_npy_stream **out);
onnxtl_status *otl_npy_stream_write(otl_npy_stream *s, const void *data, size_t bytes);
/* keep=false discards the file; otherwise it is renamed into place. */
onnxtl_status *otl_npy_stream_close(otl_npy_stream *s, bool keep);

#endif
