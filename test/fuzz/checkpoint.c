/* train --resume's checkpoint reader, against the state of a small trainer
 * (16 parameters with Adam's two moments, 4 running statistics). */
#include <stdlib.h>

#include "checkpoint.h"
#include "fuzz.h"

#define FLOATS 16
#define STATS 4

/* What the seed in test/fuzz/checkpoint/ was written with. */
static const char fingerprint[] = "model fuzz\nlr 1e-05\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float params[FLOATS], m[FLOATS], v[FLOATS], stats[STATS];
    otl_trainer_state s = {params, m, v, FLOATS, stats, STATS, 0, 0};
    otl_checkpoint_epoch e;
    fuzz_drop(otl_checkpoint_read(fuzz_file(data, size, ".state"), fingerprint, &e, &s));
    return 0;
}
