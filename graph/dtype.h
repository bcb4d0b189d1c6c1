/* ONNX element types: sizes and names. */
#ifndef OTL_DTYPE_H
#define OTL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes per element, or 0 for types onnxtl does not hold in memory. */
size_t otl_dtype_size(int dtype);
const char *otl_dtype_name(int dtype);
int otl_dtype_is_float(int dtype);

/* Element i of a buffer of dtype as a double, and a double stored as one:
 * float to integer truncates toward zero and saturates, NaN becomes 0. */
double otl_dtype_load(const void *p, int dtype, int64_t i);
void otl_dtype_store(void *p, int dtype, int64_t i, double v);

#endif
