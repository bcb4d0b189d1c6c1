#include "image_model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "status.h"

/* A [N, 3, H, W] input is NCHW, a [N, H, W, 3] one NHWC; dims may be symbolic (-1). */
static bool is_nhwc(const otl_value *in) { return in->dims[3] == 3 && in->dims[1] != 3; }

onnxtl_status *otl_image_model_input(const onnxtl_model *m, const otl_preprocess *pre, otl_image_input *out) {
    const otl_graph *g = otl_model_graph(m);
    if (g->n_inputs != 1)
        return otl_error(ONNXTL_ERR_ARG, "%s: expected a model with one image input, this one has %d", g->path, g->n_inputs);
    const otl_value *in = &g->values[g->inputs[0]];
    const bool nhwc = in->rank == 4 && is_nhwc(in);
    const int64_t *hw = in->dims + (nhwc ? 1 : 2);
    if (in->rank != 4 || in->dtype != ONNXTL_FLOAT || (!nhwc && in->dims[1] >= 0 && in->dims[1] != 3))
        return otl_error(ONNXTL_ERR_ARG, "%s: input '%s' is not an N x 3 x H x W (or N x H x W x 3) float32 image",
                         g->path, in->name);
    int h, w;
    if (!otl_preprocess_fixed_size(pre, &h, &w))
        return otl_error(ONNXTL_ERR_ARG, "images of different sizes cannot be batched: give --crop or --resize HxW");
    if ((hw[0] >= 0 && hw[0] != h) || (hw[1] >= 0 && hw[1] != w))
        return otl_error(ONNXTL_ERR_ARG, "%s: the model takes %lldx%lld images but preprocessing gives %dx%d; "
                         "adjust --resize/--crop", g->path, (long long)hw[0], (long long)hw[1], h, w);
    *out = (otl_image_input){in->name, h, w, nhwc};
    return NULL;
}

void otl_image_input_dims(const otl_image_input *in, size_t n, int64_t *dims) {
    dims[0] = (int64_t)n;
    dims[in->nhwc ? 3 : 1] = 3;
    dims[in->nhwc ? 1 : 2] = in->height;
    dims[in->nhwc ? 2 : 3] = in->width;
}

/* Appends one reason to why, separated by "; ". */
static void note(char *why, size_t n, const char *text) {
    size_t len = strlen(why);
    snprintf(why + len, n - len, "%s%s", len ? "; " : "", text);
}

static void input_size(const otl_value *in, otl_preprocess *p, char *why, size_t n) {
    const int64_t *hw = in->dims + (is_nhwc(in) ? 1 : 2);
    if (hw[0] < 1 || hw[1] < 1 || hw[0] > 65535 || hw[1] > 65535 || (hw[0] == p->crop_h && hw[1] == p->crop_w)) return;
    p->crop_h = (int)hw[0], p->crop_w = (int)hw[1];
    p->resize_short = p->resize_h = p->resize_w = 0;
    const int rh = (int)lround((double)hw[0] * 256 / 224), rw = (int)lround((double)hw[1] * 256 / 224);
    if (hw[0] == hw[1]) p->resize_short = rh;
    else p->resize_h = rh, p->resize_w = rw;
    char text[96];
    snprintf(text, sizeof text, "the model's input is %lldx%lld", (long long)hw[0], (long long)hw[1]);
    note(why, n, text);
}

static void set_range(otl_preprocess *p, int scale, float mean, float std) {
    p->scale = scale;
    for (int c = 0; c < 3; c++) p->mean[c] = mean, p->std[c] = std;
}

static void image_metadata(const otl_graph *g, otl_preprocess *p, char *why, size_t n) {
    const char *format = otl_graph_meta(g, "Image.BitmapPixelFormat"), *range = otl_graph_meta(g, "Image.NominalPixelRange");
    if (format && (!strcmp(format, "Bgr8") || !strcmp(format, "Rgb8"))) {
        p->bgr = !strcmp(format, "Bgr8");
        note(why, n, p->bgr ? "metadata Image.BitmapPixelFormat=Bgr8" : "metadata Image.BitmapPixelFormat=Rgb8");
    }
    if (!range) return;
    if (!strcmp(range, "NominalRange_0_255")) set_range(p, 255, 0, 1);
    else if (!strcmp(range, "Normalized_0_1")) set_range(p, 1, 0, 1);
    else if (!strcmp(range, "Normalized_1_1")) set_range(p, 1, 0.5f, 0.5f);
    else return;
    char text[96];
    snprintf(text, sizeof text, "metadata Image.NominalPixelRange=%.40s", range);
    note(why, n, text);
}

/* Whether an ImageScaler reads the graph input (possibly after an Identity). */
static bool scaled_in_graph(const otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *nd = &g->nodes[i];
        if (nd->op == OP_IMAGESCALER && nd->n_in > 0 && nd->in[0] == g->inputs[0]) return true;
    }
    return false;
}

void otl_image_model_defaults(const onnxtl_model *m, otl_preprocess *p, char *why, size_t why_n) {
    const otl_graph *g = otl_model_graph(m);
    why[0] = '\0';
    if (g->n_inputs != 1 || g->values[g->inputs[0]].rank != 4) return; /* otl_image_model_input says why */
    input_size(&g->values[g->inputs[0]], p, why, why_n);
    if (scaled_in_graph(g)) {
        set_range(p, 255, 0, 1);
        note(why, why_n, "the model's ImageScaler normalises 0-255 pixels");
    }
    image_metadata(g, p, why, why_n);
}
