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
    float *confidence;  /* per sample: the predicted class's probability */
    int *true_rank;     /* per sample: how many classes the model ranks above the true one */
    size_t errors;      /* unreadable images, skipped with a warning */
    const otl_events *events;
} otl_evaluation;

/* Folder classes are matched to the model's by name; every split is used. */
onnxtl_status *otl_evaluate(const char *model, const char *data, int batch, const onnxtl_options *opts,
                            const otl_events *events, otl_evaluation *e);
void otl_evaluation_free(otl_evaluation *e);

typedef struct {
    double precision, recall, f1;
    int64_t support; /* images of the class */
} otl_class_figures;

/* Reliability: 10 equal-width bins of confidence, [0, 0.1) ... [0.9, 1]. */
#define OTL_RELIABILITY_BINS 10

/* What eval reports, as torchvision's reference scripts and scikit-learn's
 * classification_report compute it (a class without predictions or images
 * scores 0, as scikit-learn's zero_division default does). */
typedef struct {
    size_t scored; /* images classified */
    int n_classes;
    double top1, top5; /* top5 < 0 with fewer than 5 classes */
    otl_class_figures *per_class; /* by model class */
    otl_class_figures macro, weighted;
    struct {
        int64_t count;
        double confidence, accuracy; /* means over the bin's images */
    } bins[OTL_RELIABILITY_BINS];
    double ece; /* expected calibration error: sum over bins of count/scored * |accuracy - confidence| */
} otl_eval_figures;

onnxtl_status *otl_evaluation_figures(const otl_evaluation *e, otl_eval_figures *f);
void otl_eval_figures_free(otl_eval_figures *f);

#endif
