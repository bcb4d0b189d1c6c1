#include "events.h"

#include <stdarg.h>

#include "backend.h"

void otl_events_progress(const otl_events *ev, const char *what, const char *unit, size_t done, size_t total) {
    if (ev && ev->progress) ev->progress(ev->ctx, what, unit, done, total);
}

void otl_events_note(const otl_events *ev, bool warning, const char *fmt, ...) {
    if (!ev) return;
    va_list ap;
    va_start(ap, fmt);
    otl_log_vline(&(otl_log){warning ? ev->warning : ev->note, ev->ctx}, fmt, ap);
    va_end(ap);
}

void otl_events_epoch(const otl_events *ev, const otl_epoch_figures *e) {
    if (ev && ev->epoch) ev->epoch(ev->ctx, e);
}
