/* fit-head: a new classifier head trained on a features file, exported with
 * the backbone it came from as one ONNX model. */
#ifndef OTL_FIT_HEAD_H
#define OTL_FIT_HEAD_H

#include "train.h"

typedef struct {
    const char *features;
    const char *out;       /* the model to write; NULL: train and write only head_only */
    const char *head_only; /* also the head alone (input 'features'), or NULL */
    const char *backbone;  /* the backbone model, if it moved; NULL: the one the features name */
    const char *head;      /* auto (the shape of the classifier the cut removed), linear or mlp */
    int hidden[2];         /* MLP hidden sizes; 0: as the removed classifier, else 4096 */
    const char *init_from, *save_weights; /* DIR/w0.npy, b0.npy, ... or NULL */
    const char *report;                   /* an HTML report of the training curves, or NULL */
    otl_train_options train;
} otl_fit_head_options;

typedef struct otl_fit_head otl_fit_head;

/* Opens the features, checks the backbone (before any training, so that no
 * work is lost to a missing file) and builds the head. */
onnxtl_status *otl_fit_head_open(const otl_fit_head_options *o, otl_fit_head **out);
/* The head that will be trained. */
const otl_head *otl_fit_head_layers(const otl_fit_head *f);
/* Trains, then writes what the options ask for. */
onnxtl_status *otl_fit_head_run(otl_fit_head *f, otl_train_result *r);
void otl_fit_head_close(otl_fit_head *f);

#endif
