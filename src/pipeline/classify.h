/* Classifying image files with a fine-tuned model from fit-head: its
 * metadata gives the class names and the preprocessing to apply. */
#ifndef OTL_CLASSIFY_H
#define OTL_CLASSIFY_H

#include "batches.h"
#include "image_model.h"

typedef struct {
    onnxtl_model *model;
    onnxtl_session *session;
    otl_image_input input;
    const char *output; /* the model's output tensor, its probabilities */
    otl_preprocess pre;
    char **classes; /* from metadata, or "0", "1", ... */
    int n_classes;
    char *class_text; /* storage behind classes */
} otl_classifier;

/* Loads model; preprocessing comes from fit-head's metadata, else from what
 * the model states (otl_image_model_defaults), and the user's spec (NULL:
 * none) overrides either. */
onnxtl_status *otl_classifier_open(const char *model_path, const onnxtl_options *opts, const otl_preprocess_spec *user,
                                   otl_classifier *c);
void otl_classifier_close(otl_classifier *c);

/* Called per readable image with its class probabilities, and per unreadable one with why. */
typedef struct {
    void (*on_image)(void *ctx, size_t index, const float *probs);
    void (*on_error)(void *ctx, size_t index, const char *why);
    void *ctx;
} otl_classify_sink;

onnxtl_status *otl_classify_files(otl_classifier *c, const char *const *paths, size_t n, int batch,
                                  const otl_classify_sink *sink);

#endif
