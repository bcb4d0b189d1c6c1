/* NumPy .npy files (format versions 1-3, C order) to and from onnxtl_tensor. */
#ifndef OTL_NPY_H
#define OTL_NPY_H

#include "onnxtl.h"

/* Reads path into t (t->data is malloc'ed; free it). */
onnxtl_status *otl_npy_read(const char *path, onnxtl_tensor *t);
/* Writes t to path atomically (temporary file, then rename). */
onnxtl_status *otl_npy_write(const char *path, const onnxtl_tensor *t);

#endif
