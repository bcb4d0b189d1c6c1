/* Overflow-checked size arithmetic for everything derived from file contents. */
#ifndef OTL_CHECKED_H
#define OTL_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Each returns false (and leaves *out unspecified) on overflow. */
static inline bool otl_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool otl_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool otl_mul_i64(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* Largest element count onnxtl accepts for one tensor (2^40): keeps every
 * byte size and index computation far from overflow. */
#define OTL_MAX_ELEMS ((int64_t)1 << 40)

/* Element count of a shape; false for negative dims or a count over OTL_MAX_ELEMS. */
static inline bool otl_shape_count(const int64_t *dims, int rank, int64_t *out) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0 || !otl_mul_i64(n, dims[i], &n) || n > OTL_MAX_ELEMS) return false;
    }
    *out = n;
    return true;
}

#endif
