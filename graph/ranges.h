/* Activation ranges: the smallest and largest value a tensor took over a
 * calibration sample, by tensor name.  Quantised arithmetic (--precision
 * int8) derives each tensor's scale from them.  They travel as text, one
 * line per tensor, "MIN<tab>MAX<tab>NAME", in a features file's metadata and
 * in a fitted model's metadata, so a resume, a merge and a later run use the
 * very scales the features were computed with. */
#ifndef OTL_RANGES_H
#define OTL_RANGES_H

#include <stdbool.h>
#include <stddef.h>

#include "onnxtl_base.h"

typedef struct {
    char *name;
    float min, max;
} otl_range;

typedef struct {
    otl_range *items; /* sorted by name */
    size_t n, cap;
} otl_ranges;

/* Parses text (len bytes, lines as above); errors say which line is bad.
 * A range must be finite with MIN <= MAX, both at most 1e30 in magnitude. */
onnxtl_status *otl_ranges_parse(const char *text, size_t len, otl_ranges *out);
/* Adds or widens name's range to cover [min, max]. */
onnxtl_status *otl_ranges_cover(otl_ranges *r, const char *name, float min, float max);
/* The range of name, or NULL. */
const otl_range *otl_ranges_find(const otl_ranges *r, const char *name);
/* A name a line can hold: not empty, no tab, newline or carriage return. */
bool otl_ranges_name_ok(const char *name);
/* The text form (malloc'ed, NUL-terminated); every float written so that it
 * parses back to the same bits. */
onnxtl_status *otl_ranges_text(const otl_ranges *r, char **text);
void otl_ranges_free(otl_ranges *r);

#endif
