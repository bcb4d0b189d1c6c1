/* Per-node placement: a plan's steps run on the requested backend where it
 * runs them and on the CPU otherwise, as segments of consecutive steps with
 * host copies between them. */
#ifndef OTL_PLACEMENT_H
#define OTL_PLACEMENT_H

#include "backend.h"

typedef struct otl_placed otl_placed;

/* Places and prepares plan, which must outlive the result. */
onnxtl_status *otl_place(const otl_plan *plan, const otl_backend *main, const otl_backend_config *cfg,
                         otl_placed **out);
/* inputs[i] is host data for plan->inputs[i]; outputs[i] receives plan->outputs[i]. */
onnxtl_status *otl_placed_run(otl_placed *pl, const void *const *inputs, void *const *outputs);
void otl_placed_release(otl_placed *pl);

/* Why step i of plan would leave the main backend for the CPU, or NULL. */
const char *otl_place_fallback(const otl_plan *plan, int step, const otl_backend *main, const otl_backend_env *env);

#endif
