/* HTML reports people look at instead of read: one self-contained file each
 * (inline CSS, charts as inline SVG drawn here, photos as data: URIs, no
 * scripts, nothing fetched), written to FILE.tmp and renamed into place.
 * Every figure a test compares carries a data-figure attribute. */
#ifndef OTL_REPORT_H
#define OTL_REPORT_H

#include "evaluate.h"
#include "train.h"

/* eval --report: the figures, the confusion matrix as a coloured table, a
 * reliability diagram, and the misclassified photos as thumbnails, the most
 * confident mistakes first (at most max_photos). */
onnxtl_status *otl_report_eval(const char *path, const otl_evaluation *e, const otl_eval_figures *f,
                               const char *model, const char *data, int max_photos);

/* fit-head --report: loss and accuracy curves for train and the evaluation
 * split (split: its name, "test" or "val"; NULL: "test"). */
onnxtl_status *otl_report_training(const char *path, const otl_train_history *h, const char *features,
                                   const char *split);

#endif
