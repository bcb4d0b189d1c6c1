/* The model loader and planner: bytes, then load, then a plan at batch 1 of
 * every output, then what info summarises (head, parameters). */
#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    onnxtl_model *m = NULL;
    onnxtl_status *st = onnxtl_model_load_memory(data, size, "fuzz.onnx", &m);
    if (st) {
        fuzz_drop(st);
        return 0;
    }
    const otl_graph *g = otl_model_graph(m);
    char why[512], head[256];
    const int cut = otl_graph_head_input(g, why, sizeof why);
    if (cut >= 0) otl_graph_head_shape(g, cut, head, sizeof head);
    int64_t params;
    size_t bytes;
    otl_graph_param_stats(g, &params, &bytes);
    otl_plan *p = NULL;
    fuzz_drop(otl_model_plan(m, NULL, 1, g->outputs, g->n_outputs, &p));
    otl_plan_free(p);
    onnxtl_model_release(m);
    return 0;
}
