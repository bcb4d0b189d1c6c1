/* Models that take images: the input they expect, checked against
 * preprocessing, and the preprocessing they state. */
#ifndef OTL_IMAGE_MODEL_H
#define OTL_IMAGE_MODEL_H

#include "onnxtl.h"
#include "preprocess.h"

typedef struct {
    const char *name;  /* the model's image input */
    int height, width; /* preprocessed size, which the model accepts */
    bool nhwc;         /* the input is N x H x W x 3 (tf2onnx and Keras exports) */
} otl_image_input;

/* The model must have one float32 image input, N x 3 x H x W or N x H x W x 3,
 * whose fixed sizes match pre's output. */
onnxtl_status *otl_image_model_input(const onnxtl_model *m, const otl_preprocess *pre, otl_image_input *out);

/* The input tensor's dims for a batch of n images. */
void otl_image_input_dims(const otl_image_input *in, size_t n, int64_t *dims);

/* Changes p to what the model states, and says why in `why` (empty when it
 * states nothing): its fixed input size becomes the crop, with torchvision's
 * 224-of-256 resize ratio; the image metadata Windows ML and Custom Vision
 * write (Image.BitmapPixelFormat Bgr8/Rgb8, Image.NominalPixelRange) set the
 * channel order and pixel range; an input read first by ImageScaler (Caffe-
 * era converters) takes 0 to 255 pixels, which the model normalises itself. */
void otl_image_model_defaults(const onnxtl_model *m, otl_preprocess *p, char *why, size_t why_n);

#endif
