/* Writing models: the original backbone up to the cut plus a trained head,
 * or the head alone.  Works on the original protobuf, so the backbone is kept
 * exactly as its producer wrote it. */
#ifndef OTL_EXPORT_H
#define OTL_EXPORT_H

#include "status.h"

typedef struct {
    int n_layers;               /* Gemm layers; Relu between them */
    const int *dims;            /* in, hidden..., classes */
    const float *const *w;      /* [out, in] per layer */
    const float *const *b;      /* [out] per layer */
    const char *const *meta_keys, *const *meta_values; /* metadata_props to set */
    int n_meta;
    float dropout; /* > 0: a Dropout of this ratio after each hidden layer's Relu (for training it) */
} otl_head_spec;

/* backbone_path's graph pruned to what computes cut (of rank cut_rank at
 * batch 1), then Flatten if needed, the head, and Softmax "probabilities". */
onnxtl_status *otl_export_model(const char *backbone_path, const char *cut, int cut_rank, const otl_head_spec *h,
                                const char *out_path);
/* model_path's model as its producer wrote it, but for the float
 * initializers names[i], whose data becomes data[i] (counts[i] floats, as
 * many as the initializer holds), stored inline, and for Dropout nodes,
 * written for inference (without a training_mode input). */
onnxtl_status *otl_export_trained(const char *model_path, const char *const *names, const float *const *data,
                                  const size_t *counts, size_t n, const char *out_path);
/* The head alone: input "features" [N, in], output "probabilities". */
onnxtl_status *otl_export_head(const otl_head_spec *h, const char *out_path);

#endif
