/* Shared by the fuzz targets (test/fuzz/NAME.c): each defines libFuzzer's
 * LLVMFuzzerTestOneInput.  make fuzz links them with libFuzzer; make test
 * links them with replay.c, which feeds them the saved inputs under
 * test/fuzz/<target>/, so that every input that ever failed is run again. */
#ifndef OTL_FUZZ_H
#define OTL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "onnxtl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a file of this process in /dev/shm (or TMPDIR) and returns
 * its path, for readers that take one; the same path every call. */
const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix);

/* Releases a status the target expected (a refusal is a correct answer). */
static inline void fuzz_drop(onnxtl_status *st) { onnxtl_status_release(st); }

#endif
