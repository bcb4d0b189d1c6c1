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

/* A new head's layer sizes (dims: in, hidden..., classes): kind linear, mlp
 * (Linear-ReLU-Dropout twice, then Linear; hidden sizes as given, else as
 * the removed classifier's when it had three layers, else 4096), or auto
 * (mlp where the removed classifier, n_removed layers of (in, out) sizes,
 * had three, as VGG's; linear otherwise). */
onnxtl_status *otl_head_layers_for(const char *kind, const int hidden[2], int n_removed, const int64_t (*removed)[2],
                                   int64_t dim, int n_classes, int *n_layers, int *dims);

/* The metadata_props a model onnxtl writes carries for run and infer: the
 * class names ("onnxtl.classes", one per line) and the preprocessing
 * ("onnxtl.resize", ...), then what otl_model_meta_add adds (values it
 * points to, which must outlive it). */
#define OTL_MODEL_META_MAX 10
typedef struct {
    char *names;
    otl_preprocess_text pre;
    const char *keys[OTL_MODEL_META_MAX], *values[OTL_MODEL_META_MAX];
    int n;
} otl_model_meta;

onnxtl_status *otl_model_meta_init(otl_model_meta *mm, char *const *classes, int n_classes, const otl_preprocess *pre);
void otl_model_meta_add(otl_model_meta *mm, const char *key, const char *value);
void otl_model_meta_free(otl_model_meta *mm);

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
