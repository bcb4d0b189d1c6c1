/* The CLI's side of the pipeline's events: progress of long work as a bar
 * with rate and ETA on a terminal, a plain line every 10 seconds otherwise;
 * notes on stderr; per-epoch figures on stdout.  Quiet keeps only warnings. */
#ifndef OTL_PROGRESS_H
#define OTL_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "events.h"

typedef struct {
    const char *what, *unit;
    size_t total, done;
    bool tty, quiet, shown;
    double start, last;
} otl_progress;

typedef struct {
    otl_progress bar;
    bool quiet;
} cli_reporter;

/* Events that report to the terminal through r, which must outlive them. */
otl_events cli_reporter_events(cli_reporter *r, bool quiet);

#endif
