/* Models that take images: the input they expect, checked against preprocessing. */
#ifndef OTL_IMAGE_MODEL_H
#define OTL_IMAGE_MODEL_H

#include "onnxtl.h"
#include "preprocess.h"

typedef struct {
    const char *name;  /* the model's image input */
    int height, width; /* preprocessed size, which the model accepts */
} otl_image_input;

/* The model must have one N x 3 x H x W float32 input whose fixed sizes match pre's output. */
onnxtl_status *otl_image_model_input(const onnxtl_model *m, const otl_preprocess *pre, otl_image_input *out);

#endif
