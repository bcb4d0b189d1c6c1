#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Handed out when even the status cannot be allocated; read-only, never freed. */
static const struct {
    onnxtl_status st;
    char msg[16];
} nomem_status = {{ONNXTL_ERR_NOMEM, 1}, "out of memory"};

onnxtl_status *otl_nomem(void) { return (onnxtl_status *)&nomem_status.st; }

static onnxtl_status *status_vformat(onnxtl_code code, const char *prefix, const char *fmt,
                                     va_list ap) {
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t plen = prefix ? strlen(prefix) + 2 : 0;
    size_t len = plen + strlen(buf);
    onnxtl_status *st = malloc(sizeof *st + len + 1);
    if (!st) return otl_nomem();
    st->code = code;
    st->is_static = 0;
    if (prefix)
        snprintf(st->msg, len + 1, "%s: %s", prefix, buf);
    else
        memcpy(st->msg, buf, len + 1);
    return st;
}

onnxtl_status *otl_error(onnxtl_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    onnxtl_status *st = status_vformat(code, NULL, fmt, ap);
    va_end(ap);
    return st;
}

onnxtl_status *otl_error_wrap(onnxtl_status *st, const char *fmt, ...) {
    if (!st || st->is_static) return st;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    onnxtl_status *wrapped = otl_error(st->code, "%s: %s", prefix, st->msg);
    onnxtl_status_release(st);
    return wrapped;
}

onnxtl_code onnxtl_status_code(const onnxtl_status *st) { return st ? st->code : ONNXTL_OK; }

const char *onnxtl_status_message(const onnxtl_status *st) { return st ? st->msg : "ok"; }

void onnxtl_status_release(onnxtl_status *st) {
    if (st && !st->is_static) free(st);
}
