/* Internal access from the pipeline and CLI to what a public model handle holds. */
#ifndef OTL_MODEL_H
#define OTL_MODEL_H

#include "ir.h"
#include "plan.h"
#include "onnxtl.h"

const otl_graph *otl_model_graph(const onnxtl_model *m);
/* A model for training: its graph as written (otl_graph_load_as_written). */
onnxtl_status *otl_model_load_as_written(const char *path, onnxtl_model **out);

/* A plan of the model computing values, built with the CPU as the evaluator
 * of constant subgraphs: for shapes and memory, not for running.  inputs
 * describes every graph input; NULL means each at batch size batch (its
 * symbolic dimensions set to it). */
onnxtl_status *otl_model_plan(const onnxtl_model *m, const otl_tinfo *inputs, int64_t batch, const int *values,
                              int n_values, otl_plan **out);
/* Calls each(ctx, node, why) for every step of the model's plan at batch 1
 * that a session with opts would run on the CPU instead of opts' device;
 * *n_steps receives the number of steps. */
onnxtl_status *otl_model_fallbacks(const onnxtl_model *m, const onnxtl_options *opts,
                                   void (*each)(void *ctx, const otl_node *n, const char *why), void *ctx, int *n_steps);
/* The shape and type of value v (no data), as otl_model_plan would plan it. */
onnxtl_status *otl_model_shape(const onnxtl_model *m, const otl_tinfo *inputs, int64_t batch, int v, otl_tinfo *shape);

#endif
