/* A file written whole or not at all: the writes go to PATH.tmp, which is
 * synced and renamed over PATH at the end, so that a crash or an error
 * leaves the old file (or none), never half a new one. */
#ifndef OTL_ATOMIC_FILE_H
#define OTL_ATOMIC_FILE_H

#include <stdio.h>

#include "status.h"

typedef struct {
    FILE *f;
    char *path, *tmp;
} otl_atomic_file;

onnxtl_status *otl_atomic_open(const char *path, otl_atomic_file *a);
onnxtl_status *otl_atomic_write(otl_atomic_file *a, const void *data, size_t bytes);
/* With st NULL: flushes, syncs and renames PATH.tmp into place.  Otherwise,
 * or when that fails, removes PATH.tmp.  Returns st, else the commit's error. */
onnxtl_status *otl_atomic_close(otl_atomic_file *a, onnxtl_status *st);
/* Removes PATH.tmp, leaving PATH as it was. */
void otl_atomic_discard(otl_atomic_file *a);

#endif
