#include "dtype.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "onnxtl_base.h"

size_t otl_dtype_size(int dtype) {
    switch (dtype) {
    case ONNXTL_BOOL: case ONNXTL_INT8: case ONNXTL_UINT8: return 1;
    case ONNXTL_FLOAT8E4M3FN: case ONNXTL_FLOAT8E4M3FNUZ: case ONNXTL_FLOAT8E5M2: case ONNXTL_FLOAT8E5M2FNUZ:
    case ONNXTL_UINT4: case ONNXTL_INT4: case ONNXTL_FLOAT4E2M1: case ONNXTL_FLOAT8E8M0: case ONNXTL_UINT2:
    case ONNXTL_INT2: return 1;
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
        [21] = "uint4", [22] = "int4", [23] = "float4e2m1", [24] = "float8e8m0", [25] = "uint2",
        [26] = "int2",
    };
    if (dtype >= 0 && dtype < (int)(sizeof names / sizeof names[0]) && names[dtype])
        return names[dtype];
    return "unknown type";
}

int otl_dtype_is_narrow(int dtype) { return dtype >= ONNXTL_FLOAT8E4M3FN && dtype <= ONNXTL_INT2; }

int otl_dtype_file_bits(int dtype) {
    switch (dtype) {
    case ONNXTL_UINT4: case ONNXTL_INT4: case ONNXTL_FLOAT4E2M1: return 4;
    case ONNXTL_UINT2: case ONNXTL_INT2: return 2;
    default: return (int)otl_dtype_size(dtype) * 8;
    }
}

int otl_dtype_is_float(int dtype) {
    return dtype == ONNXTL_FLOAT || dtype == ONNXTL_DOUBLE || dtype == ONNXTL_FLOAT16 ||
           dtype == ONNXTL_BFLOAT16;
}

/* IEEE half and bfloat16 conversions with round-to-nearest-even. */
float otl_float_from_half(uint16_t h) {
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

uint16_t otl_half_from_float(float f) {
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

void otl_halves_to_floats(const void *src, float *dst, size_t n) {
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i++) dst[i] = otl_float_from_half((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
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

/* A small float format: 1 sign bit, then exponent and mantissa.  ieee
 * formats (E5M2) keep the top exponent for infinities and NaNs; FN formats
 * (E4M3FN) have no infinity and one NaN mantissa; FNUZ formats spend the
 * negative zero on their only NaN; E2M1 has neither. */
typedef enum { SPECIALS_IEEE, SPECIALS_FN, SPECIALS_FNUZ, SPECIALS_NONE } minifloat_specials;
typedef struct {
    int exp_bits, man_bits, bias;
    minifloat_specials specials;
} minifloat;

static const minifloat *minifloat_of(int dtype) {
    static const minifloat e4m3fn = {4, 3, 7, SPECIALS_FN}, e4m3fnuz = {4, 3, 8, SPECIALS_FNUZ},
                           e5m2 = {5, 2, 15, SPECIALS_IEEE}, e5m2fnuz = {5, 2, 16, SPECIALS_FNUZ},
                           e2m1 = {2, 1, 1, SPECIALS_NONE};
    switch (dtype) {
    case ONNXTL_FLOAT8E4M3FN: return &e4m3fn;
    case ONNXTL_FLOAT8E4M3FNUZ: return &e4m3fnuz;
    case ONNXTL_FLOAT8E5M2: return &e5m2;
    case ONNXTL_FLOAT8E5M2FNUZ: return &e5m2fnuz;
    case ONNXTL_FLOAT4E2M1: return &e2m1;
    default: return NULL;
    }
}

static unsigned minifloat_sign(const minifloat *f) { return 1u << (f->exp_bits + f->man_bits); }

static double minifloat_to_double(const minifloat *f, unsigned code) {
    const unsigned man_mask = (1u << f->man_bits) - 1, exp_max = (1u << f->exp_bits) - 1;
    const unsigned e = (code >> f->man_bits) & exp_max, m = code & man_mask;
    const bool negative = code & minifloat_sign(f);
    const double nan = negative ? -NAN : NAN; /* FNUZ's NaN is the negative zero's code */
    if (f->specials == SPECIALS_FNUZ && code == minifloat_sign(f)) return nan;
    if (f->specials == SPECIALS_FN && e == exp_max && m == man_mask) return nan;
    if (f->specials == SPECIALS_IEEE && e == exp_max) return m ? nan : negative ? -INFINITY : INFINITY;
    double v = e ? ldexp(1.0 + ldexp(m, -f->man_bits), (int)e - f->bias) : ldexp(m, 1 - f->bias - f->man_bits);
    return negative ? -v : v;
}

/* The largest finite value's code, without sign. */
static unsigned minifloat_max_code(const minifloat *f) {
    const unsigned all = minifloat_sign(f) - 1, man_mask = (1u << f->man_bits) - 1;
    switch (f->specials) {
    case SPECIALS_IEEE: return all - man_mask - 1; /* below the infinity exponent */
    case SPECIALS_FN: return all - 1;              /* below the NaN mantissa */
    default: return all;
    }
}

static unsigned minifloat_nan(const minifloat *f, bool negative) {
    const unsigned sign = negative ? minifloat_sign(f) : 0;
    switch (f->specials) {
    case SPECIALS_IEEE: return sign | (minifloat_max_code(f) + 1) | 1u << (f->man_bits - 1); /* a quiet NaN */
    case SPECIALS_FN: return sign | (minifloat_sign(f) - 1);
    case SPECIALS_FNUZ: return minifloat_sign(f);
    default: return minifloat_sign(f); /* E2M1 has none: ONNX writes the negative zero */
    }
}

/* Round to nearest even; out of range saturates or becomes infinity or NaN. */
static unsigned double_to_minifloat(const minifloat *f, double v, bool saturate) {
    const bool negative = signbit(v);
    const unsigned sign = negative ? minifloat_sign(f) : 0, max_code = minifloat_max_code(f);
    if (isnan(v)) return minifloat_nan(f, negative);
    const bool clamps = saturate || f->specials == SPECIALS_NONE;
    const unsigned overflow = clamps                          ? sign | max_code
                              : f->specials == SPECIALS_IEEE ? sign | (max_code + 1)
                                                             : minifloat_nan(f, negative);
    const double a = fabs(v), emin = 1 - f->bias, max = minifloat_to_double(f, max_code);
    if (isinf(a) || a > max * 2) return overflow;
    int e;
    frexp(a, &e);
    const double quantum = ldexp(1.0, (e - 1 > emin ? e - 1 : (int)emin) - f->man_bits);
    const double r = nearbyint(a / quantum) * quantum;
    if (r > max) return overflow;
    if (r == 0) return f->specials == SPECIALS_FNUZ ? 0 : sign;
    unsigned code;
    if (r < ldexp(1.0, (int)emin)) {
        code = (unsigned)ldexp(r, f->bias - 1 + f->man_bits);
    } else {
        frexp(r, &e);
        unsigned m = (unsigned)(ldexp(r, f->man_bits - (e - 1)) - ldexp(1.0, f->man_bits));
        code = (unsigned)(e - 1 + f->bias) << f->man_bits | m;
    }
    return sign | code;
}

/* E8M0 is a biased power of two: 2^(code - 127), 0xff for NaN. */
static double e8m0_to_double(uint8_t code) { return code == 0xff ? NAN : ldexp(1.0, code - 127); }

/* As ONNX defines it on float32's bits: the exponent field, moved up by the
 * rounding mode when the mantissa is not zero, and never to NaN when
 * saturating. */
static uint8_t float_to_e8m0(float f, otl_cast_rules rules) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t e = (bits >> 23) & 0xff, m = bits & 0x7fffff;
    if (isnan(f) || isinf(f)) return isinf(f) && rules.saturate ? 0xfe : 0xff;
    bool up = rules.round == OTL_ROUND_UP ? m != 0 : rules.round == OTL_ROUND_NEAREST ? (m & 0x400000) != 0 : false;
    if (up) e++;
    if (e == 0xff && rules.saturate) e = 0xfe;
    return (uint8_t)e;
}

double otl_dtype_load(const void *p, int dtype, int64_t i) {
    switch (dtype) {
    case ONNXTL_FLOAT: return ((const float *)p)[i];
    case ONNXTL_DOUBLE: return ((const double *)p)[i];
    case ONNXTL_FLOAT16: return otl_float_from_half(((const uint16_t *)p)[i]);
    case ONNXTL_BFLOAT16: return bf16_to_float(((const uint16_t *)p)[i]);
    case ONNXTL_INT8: case ONNXTL_INT4: case ONNXTL_INT2: return ((const int8_t *)p)[i];
    case ONNXTL_UINT4: case ONNXTL_UINT2: return ((const uint8_t *)p)[i];
    case ONNXTL_FLOAT8E8M0: return e8m0_to_double(((const uint8_t *)p)[i]);
    case ONNXTL_FLOAT8E4M3FN: case ONNXTL_FLOAT8E4M3FNUZ: case ONNXTL_FLOAT8E5M2: case ONNXTL_FLOAT8E5M2FNUZ:
    case ONNXTL_FLOAT4E2M1: return minifloat_to_double(minifloat_of(dtype), ((const uint8_t *)p)[i]);
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

/* A truncated integer kept modulo 2^bits, as a signed or unsigned value. */
static int wrap_bits(double v, int bits, bool is_signed) {
    int64_t x = to_int(v, -9.2233720368547748e18, 9.2233720368547748e18);
    int u = (int)(x & ((1 << bits) - 1));
    return is_signed && u >= 1 << (bits - 1) ? u - (1 << bits) : u;
}

void otl_dtype_store(void *p, int dtype, int64_t i, double v) { otl_dtype_store_as(p, dtype, i, v, OTL_CAST_DEFAULT); }

void otl_dtype_store_as(void *p, int dtype, int64_t i, double v, otl_cast_rules rules) {
    switch (dtype) {
    case ONNXTL_FLOAT8E4M3FN: case ONNXTL_FLOAT8E4M3FNUZ: case ONNXTL_FLOAT8E5M2: case ONNXTL_FLOAT8E5M2FNUZ:
    case ONNXTL_FLOAT4E2M1:
        ((uint8_t *)p)[i] = (uint8_t)double_to_minifloat(minifloat_of(dtype), v, rules.saturate);
        break;
    case ONNXTL_FLOAT8E8M0: ((uint8_t *)p)[i] = float_to_e8m0((float)v, rules); break;
    case ONNXTL_INT4: ((int8_t *)p)[i] = (int8_t)wrap_bits(v, 4, true); break;
    case ONNXTL_UINT4: ((uint8_t *)p)[i] = (uint8_t)wrap_bits(v, 4, false); break;
    case ONNXTL_INT2: ((int8_t *)p)[i] = (int8_t)wrap_bits(v, 2, true); break;
    case ONNXTL_UINT2: ((uint8_t *)p)[i] = (uint8_t)wrap_bits(v, 2, false); break;
    case ONNXTL_FLOAT: ((float *)p)[i] = (float)v; break;
    case ONNXTL_DOUBLE: ((double *)p)[i] = v; break;
    case ONNXTL_FLOAT16: ((uint16_t *)p)[i] = otl_half_from_float((float)v); break;
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

/* Files pack elements from the low bits of each byte up. */
void otl_dtype_unpack(const uint8_t *packed, int dtype, int64_t count, uint8_t *dst) {
    const int bits = otl_dtype_file_bits(dtype), per_byte = 8 / bits, mask = (1 << bits) - 1;
    const bool sign_extend = dtype == ONNXTL_INT4 || dtype == ONNXTL_INT2;
    for (int64_t i = 0; i < count; i++) {
        int v = (packed[i / per_byte] >> (i % per_byte * bits)) & mask;
        if (sign_extend && v >= 1 << (bits - 1)) v -= 1 << bits;
        dst[i] = (uint8_t)v;
    }
}

static const char *const precision_names[] = {"fp32", "tf32", "fp16", "bf16", "int8"};

const char *otl_precision_name(onnxtl_precision p) {
    return (unsigned)p < sizeof precision_names / sizeof *precision_names ? precision_names[p] : "?";
}

bool otl_precision_parse(const char *name, onnxtl_precision *p) {
    for (size_t i = 0; i < sizeof precision_names / sizeof *precision_names; i++)
        if (!strcmp(name, precision_names[i])) {
            *p = (onnxtl_precision)i;
            return true;
        }
    return false;
}
