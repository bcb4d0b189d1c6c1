/* ONNX element types: sizes and names. */
#ifndef OTL_DTYPE_H
#define OTL_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxtl_base.h"

/* Bytes per element, or 0 for types onnxtl does not hold in memory. */
size_t otl_dtype_size(int dtype);
const char *otl_dtype_name(int dtype);
int otl_dtype_is_float(int dtype);

/* The narrow types (float8, float4, e8m0, 4- and 2-bit integers): one byte
 * per element in memory, and bits per element in a file. */
int otl_dtype_is_narrow(int dtype);
int otl_dtype_file_bits(int dtype);

/* How a value is stored into a narrower type, as ONNX's Cast attributes say. */
typedef enum { OTL_ROUND_UP, OTL_ROUND_DOWN, OTL_ROUND_NEAREST } otl_round_mode;
typedef struct {
    int saturate;          /* float8: out-of-range values become the largest finite one */
    otl_round_mode round;  /* float8e8m0 */
} otl_cast_rules;
#define OTL_CAST_DEFAULT ((otl_cast_rules){1, OTL_ROUND_UP})

/* Element i of a buffer of dtype as a double, and a double stored as one
 * under Cast's rules: floats round to nearest even; float to integer
 * truncates toward zero and saturates (4- and 2-bit integers wrap, as ONNX
 * defines them), NaN becomes 0. */
double otl_dtype_load(const void *p, int dtype, int64_t i);
void otl_dtype_store(void *p, int dtype, int64_t i, double v);
void otl_dtype_store_as(void *p, int dtype, int64_t i, double v, otl_cast_rules rules);

/* IEEE half precision: exact widening, and narrowing rounded to nearest even
 * (from 65520 in magnitude, infinity). */
float otl_float_from_half(uint16_t h);
uint16_t otl_half_from_float(float f);
/* n little-endian halves, at any alignment, widened into dst. */
void otl_halves_to_floats(const void *src, float *dst, size_t n);

/* A precision's name ("fp32", "int8"), and the precision a name gives. */
const char *otl_precision_name(onnxtl_precision p);
bool otl_precision_parse(const char *name, onnxtl_precision *p);

/* Packed file bits to one element per byte, sign-extending the signed integers. */
void otl_dtype_unpack(const uint8_t *packed, int dtype, int64_t count, uint8_t *dst);

#endif
