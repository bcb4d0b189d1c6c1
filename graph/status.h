/* Internal side of onnxtl_status: creation helpers and propagation macros. */
#ifndef OTL_STATUS_H
#define OTL_STATUS_H

#include "onnxtl_base.h"

struct onnxtl_status {
    onnxtl_code code;
    int is_static; /* the preallocated out-of-memory status is never freed */
    char msg[];
};

onnxtl_status *otl_error(onnxtl_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to an existing status and returns it. */
onnxtl_status *otl_error_wrap(onnxtl_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
onnxtl_status *otl_nomem(void);

#define OTL_TRY(expr)                          \
    do {                                       \
        onnxtl_status *otl_try_st_ = (expr);   \
        if (otl_try_st_) return otl_try_st_;   \
    } while (0)

/* Runs expr; on failure stores the status in st and jumps to label. */
#define OTL_TRY_GOTO(st, expr, label) \
    do {                              \
        (st) = (expr);                \
        if (st) goto label;           \
    } while (0)

#endif
