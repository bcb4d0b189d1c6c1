/* Progress of long work: a bar with rate and ETA on a terminal, a plain line
 * every 10 seconds otherwise, nothing when quiet.  Written to stderr. */
#ifndef OTL_PROGRESS_H
#define OTL_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *what, *unit;
    size_t total, done;
    bool tty, quiet, shown;
    double start, last;
} otl_progress;

double otl_now(void);
void otl_progress_start(otl_progress *p, const char *what, const char *unit, size_t total, bool quiet);
void otl_progress_update(otl_progress *p, size_t done);
void otl_progress_end(otl_progress *p);

#endif
