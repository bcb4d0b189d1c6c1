/* The calibration pass of --precision int8: the network in fp32 over a
 * sample of the user's own images, recording the range of every tensor a
 * convolution reads.  The ranges give the int8 scales (graph/ranges.h). */
#ifndef OTL_CALIBRATE_H
#define OTL_CALIBRATE_H

#include "batches.h"
#include "dataset.h"
#include "image_model.h"
#include "ranges.h"

/* At most this many images are sampled when the user names no count. */
#define OTL_CALIBRATE_DEFAULT 256

/* Which samples calibrate: n of the training images (of every image when
 * there is no training split), evenly spaced, so each class is represented
 * and every shard of an extraction picks the same ones.  *picked gets the
 * indices (malloc'ed), *n_picked how many (fewer when there are fewer). */
onnxtl_status *otl_calibration_sample(const otl_dataset *ds, size_t n, size_t **picked, size_t *n_picked);

/* Runs model in fp32 (opts otherwise as given) over the images of src, which
 * holds the sample's paths and preprocessing (its session is set here), and
 * returns in *out the ranges of the inputs of the convolutions that value
 * cut depends on. */
onnxtl_status *otl_calibrate(const onnxtl_model *model, const otl_image_input *input, int cut,
                             const onnxtl_options *opts, otl_batch_source src, otl_ranges *out);

#endif
