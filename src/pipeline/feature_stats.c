/* Statistics of a features file's rows: per split and class, value range. */
#include <math.h>
#include <stdlib.h>

#include "feature_format.h"
#include "status.h"

onnxtl_status *otl_features_stats_init(otl_features_stats *s, int n_classes) {
    *s = (otl_features_stats){.n_classes = n_classes, .min = INFINITY, .max = -INFINITY};
    s->class_rows = calloc((size_t)SPLIT_COUNT * (size_t)(n_classes > 0 ? n_classes : 1), sizeof *s->class_rows);
    return s->class_rows ? NULL : otl_nomem();
}

void otl_features_stats_add(otl_features_stats *s, const float *x, uint32_t dim, const otl_row_tag *tag) {
    s->rows++;
    s->split_rows[tag->split]++;
    if (tag->label >= 0 && tag->label < s->n_classes) s->class_rows[tag->split * s->n_classes + tag->label]++;
    for (uint32_t k = 0; k < dim; k++) {
        if (!isfinite(x[k])) {
            s->nonfinite++;
            continue;
        }
        s->min = x[k] < s->min ? x[k] : s->min;
        s->max = x[k] > s->max ? x[k] : s->max;
        s->sum += x[k];
    }
    s->values += dim;
}

void otl_features_stats_free(otl_features_stats *s) {
    free(s->class_rows);
    s->class_rows = NULL;
}
