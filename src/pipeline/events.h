/* What the pipeline tells its caller while it works.  The library never
 * prints: the CLI turns these calls into progress bars and lines on the
 * terminal, and a program on the library may ignore them.  Every member may
 * be NULL; ctx is handed back to each. */
#ifndef OTL_EVENTS_H
#define OTL_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* One epoch of head training. */
typedef struct {
    int epoch, epochs;
    double train_loss, train_acc;
    double eval_loss, eval_acc; /* -1 without an evaluation split */
    const char *eval_split;     /* "test" or "val", NULL without one */
} otl_epoch_figures;

typedef struct {
    void *ctx;
    /* Long work: done of total units; called with done 0 first, done == total last. */
    void (*progress)(void *ctx, const char *what, const char *unit, size_t done, size_t total);
    /* A line for the user: what the work is about to do, or a warning (an image skipped). */
    void (*note)(void *ctx, const char *text);
    void (*warning)(void *ctx, const char *text);
    void (*epoch)(void *ctx, const otl_epoch_figures *e);
} otl_events;

void otl_events_progress(const otl_events *ev, const char *what, const char *unit, size_t done, size_t total);
void otl_events_note(const otl_events *ev, bool warning, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void otl_events_epoch(const otl_events *ev, const otl_epoch_figures *e);

/* Seconds on a monotonic clock, for rates. */
static inline double otl_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
