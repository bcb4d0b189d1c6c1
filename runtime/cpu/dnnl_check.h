/* Checking oneDNN calls: a failed one becomes a status naming what failed. */
#ifndef OTL_DNNL_CHECK_H
#define OTL_DNNL_CHECK_H

#include <oneapi/dnnl/dnnl.h>

#include "status.h"

static inline onnxtl_status *otl_dnnl_failed(dnnl_status_t s, const char *what) {
    return otl_error(ONNXTL_ERR_RUNTIME, "oneDNN %s failed (status %d)", what, (int)s);
}

#define DNNL_TRY(call, what)                                        \
    do {                                                            \
        dnnl_status_t s_ = (call);                                  \
        if (s_ != dnnl_success) return otl_dnnl_failed(s_, what);   \
    } while (0)

#endif
