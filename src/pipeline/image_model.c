#include "image_model.h"

#include "model.h"
#include "status.h"

onnxtl_status *otl_image_model_input(const onnxtl_model *m, const otl_preprocess *pre, otl_image_input *out) {
    const otl_graph *g = onnxtl_model_graph(m);
    if (g->n_inputs != 1)
        return otl_error(ONNXTL_ERR_ARG, "%s: expected a model with one image input, this one has %d", g->path, g->n_inputs);
    const otl_value *in = &g->values[g->inputs[0]];
    if (in->rank != 4 || in->dtype != ONNXTL_FLOAT || (in->dims[1] >= 0 && in->dims[1] != 3))
        return otl_error(ONNXTL_ERR_ARG, "%s: input '%s' is not an N x 3 x H x W float32 image", g->path, in->name);
    int h, w;
    if (!otl_preprocess_fixed_size(pre, &h, &w))
        return otl_error(ONNXTL_ERR_ARG, "images of different sizes cannot be batched: give --crop or --resize HxW");
    if ((in->dims[2] >= 0 && in->dims[2] != h) || (in->dims[3] >= 0 && in->dims[3] != w))
        return otl_error(ONNXTL_ERR_ARG, "%s: the model takes %lldx%lld images but preprocessing gives %dx%d; "
                         "adjust --resize/--crop", g->path, (long long)in->dims[2], (long long)in->dims[3], h, w);
    *out = (otl_image_input){in->name, h, w};
    return NULL;
}
