/* The .npy reader, which infer and fit-head's inputs go through. */
#include <stdlib.h>

#include "fuzz.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    onnxtl_tensor t = {0};
    onnxtl_status *st = otl_npy_read(fuzz_file(data, size, ".npy"), &t);
    fuzz_drop(st);
    free(t.data);
    return 0;
}
