/* The features-file reader: header, metadata and rows, as fit-head, eval and
 * features read them.  make fuzz builds it with OTL_FUZZING, where the
 * reader takes any checksum. */
#include <stdlib.h>

#include "feature_file.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    otl_features *f = NULL;
    onnxtl_status *st = otl_features_open(fuzz_file(data, size, ".bin"), &f);
    if (!st) st = otl_features_check_rows(f);
    otl_features_stats stats = {0};
    if (!st) st = otl_features_stats_of(f, &stats);
    if (!st) {
        const otl_features_meta *m = otl_features_meta_of(f);
        float *row = malloc(sizeof(float) * m->dim);
        float sum = 0;
        for (uint64_t i = 0; row && i < stats.rows; i++) {
            const otl_row_tag tag = otl_features_tag(f, i);
            otl_features_values(f, i, row);
            sum += row[0] + row[m->dim - 1] + (float)(tag.label + tag.split) + (float)otl_features_finite(f, i);
        }
        free(row);
        (void)sum;
    }
    otl_features_stats_free(&stats);
    fuzz_drop(st);
    otl_features_close(f);
    return 0;
}
