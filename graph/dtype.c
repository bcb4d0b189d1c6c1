#include "dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "onnxtl_base.h"

size_t otl_dtype_size(int dtype) {
    switch (dtype) {
    case ONNXTL_BOOL: case ONNXTL_INT8: case ONNXTL_UINT8: return 1;
    case ONNXTL_INT16: case ONNXTL_UINT16: case ONNXTL_FLOAT16: case ONNXTL_BFLOAT16: return 2;
    case ONNXTL_INT32: case ONNXTL_UINT32: case ONNXTL_FLOAT: return 4;
    case ONNXTL_INT64: case ONNXTL_UINT64: case ONNXTL_DOUBLE: return 8;
    default: return 0;
    }
}

const char *otl_dtype_name(int dtype) {
    static const char *const names[] = {
        [0] = "undefined", [ONNXTL_FLOAT] = "float32", [ONNXTL_UINT8] = "uint8",
        [ONNXTL_INT8] = "int8", [ONNXTL_UINT16] = "uint16", [ONNXTL_INT16] = "int16",
        [ONNXTL_INT32] = "int32", [ONNXTL_INT64] = "int64", [8] = "string",
        [ONNXTL_BOOL] = "bool", [ONNXTL_FLOAT16] = "float16", [ONNXTL_DOUBLE] = "float64",
        [ONNXTL_UINT32] = "uint32", [ONNXTL_UINT64] = "uint64", [14] = "complex64",
        [15] = "complex128", [ONNXTL_BFLOAT16] = "bfloat16", [17] = "float8e4m3fn",
        [18] = "float8e4m3fnuz", [19] = "float8e5m2", [20] = "float8e5m2fnuz",
        [21] = "uint4", [22] = "int4", [23] = "float4e2m1",
    };
    if (dtype >= 0 && dtype < (int)(sizeof names / sizeof names[0]) && names[dtype])
        return names[dtype];
    return "unknown type";
}

int otl_dtype_is_float(int dtype) {
    return dtype == ONNXTL_FLOAT || dtype == ONNXTL_DOUBLE || dtype == ONNXTL_FLOAT16 ||
           dtype == ONNXTL_BFLOAT16;
}

/* IEEE half and bfloat16 conversions with round-to-nearest-even. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (!man) bits = sign;
    else { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0);
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to infinity */
    if (ax < 0x38800000u) { /* subnormal half or zero */
        float mag;
        memcpy(&mag, &ax, sizeof mag);
        return sign | (uint16_t)lrintf(mag * 16777216.0f); /* mag / 2^-24, rounded to even */
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to even */
    return sign | (uint16_t)(ax >> 13);
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

double otl_dtype_load(const void *p, int dtype, int64_t i) {
    switch (dtype) {
    case ONNXTL_FLOAT: return ((const float *)p)[i];
    case ONNXTL_DOUBLE: return ((const double *)p)[i];
    case ONNXTL_FLOAT16: return half_to_float(((const uint16_t *)p)[i]);
    case ONNXTL_BFLOAT16: return bf16_to_float(((const uint16_t *)p)[i]);
    case ONNXTL_INT8: return ((const int8_t *)p)[i];
    case ONNXTL_UINT8: case ONNXTL_BOOL: return ((const uint8_t *)p)[i];
    case ONNXTL_INT16: return ((const int16_t *)p)[i];
    case ONNXTL_UINT16: return ((const uint16_t *)p)[i];
    case ONNXTL_INT32: return ((const int32_t *)p)[i];
    case ONNXTL_UINT32: return ((const uint32_t *)p)[i];
    case ONNXTL_INT64: return (double)((const int64_t *)p)[i];
    default: return (double)((const uint64_t *)p)[i];
    }
}

/* Float to integer casts truncate toward zero; values out of range saturate
 * rather than invoke undefined behaviour. */
static int64_t to_int(double v, double lo, double hi) {
    if (v != v) return 0;
    return (int64_t)(v < lo ? lo : v > hi ? hi : v);
}

void otl_dtype_store(void *p, int dtype, int64_t i, double v) {
    switch (dtype) {
    case ONNXTL_FLOAT: ((float *)p)[i] = (float)v; break;
    case ONNXTL_DOUBLE: ((double *)p)[i] = v; break;
    case ONNXTL_FLOAT16: ((uint16_t *)p)[i] = float_to_half((float)v); break;
    case ONNXTL_BFLOAT16: ((uint16_t *)p)[i] = float_to_bf16((float)v); break;
    case ONNXTL_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    case ONNXTL_INT8: ((int8_t *)p)[i] = (int8_t)to_int(v, INT8_MIN, INT8_MAX); break;
    case ONNXTL_UINT8: ((uint8_t *)p)[i] = (uint8_t)to_int(v, 0, UINT8_MAX); break;
    case ONNXTL_INT16: ((int16_t *)p)[i] = (int16_t)to_int(v, INT16_MIN, INT16_MAX); break;
    case ONNXTL_UINT16: ((uint16_t *)p)[i] = (uint16_t)to_int(v, 0, UINT16_MAX); break;
    case ONNXTL_INT32: ((int32_t *)p)[i] = (int32_t)to_int(v, INT32_MIN, INT32_MAX); break;
    case ONNXTL_UINT32: ((uint32_t *)p)[i] = (uint32_t)to_int(v, 0, UINT32_MAX); break;
    case ONNXTL_INT64: ((int64_t *)p)[i] = to_int(v, -9.2233720368547748e18, 9.2233720368547748e18); break;
    default: ((uint64_t *)p)[i] = v <= 0 || v != v ? 0 : v >= 1.8446744073709552e19 ? UINT64_MAX : (uint64_t)v; break;
    }
}
