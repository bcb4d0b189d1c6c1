/* ONNX element types: sizes and names. */
#ifndef OTL_DTYPE_H
#define OTL_DTYPE_H

#include <stddef.h>

/* Bytes per element, or 0 for types onnxtl does not hold in memory. */
size_t otl_dtype_size(int dtype);
const char *otl_dtype_name(int dtype);
int otl_dtype_is_float(int dtype);

#endif
