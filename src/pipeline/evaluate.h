/* Accuracy of a fine-tuned model on a labelled folder: every image
 * classified, its prediction and the confusion matrix kept. */
#ifndef OTL_EVALUATE_H
#define OTL_EVALUATE_H

#include "classify.h"
#include "dataset.h"
#include "events.h"

typedef struct {
    otl_classifier c;
    otl_dataset *ds;
    int *to_model;      /* dataset label -> model class */
    int64_t *confusion; /* [true][predicted] over the model's classes */
    int *predicted;     /* per sample: the model's class, -1 if unreadable */
    size_t errors;      /* unreadable images, skipped with a warning */
    const otl_events *events;
} otl_evaluation;

/* Folder classes are matched to the model's by name; every split is used. */
onnxtl_status *otl_evaluate(const char *model, const char *data, int batch, const onnxtl_options *opts,
                            const otl_events *events, otl_evaluation *e);
void otl_evaluation_free(otl_evaluation *e);

#endif
