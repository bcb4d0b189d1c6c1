/* A model instantiated for concrete input shapes: shapes of every value,
 * folded constants, the nodes left to run and the activation arena layout. */
#ifndef OTL_PLAN_H
#define OTL_PLAN_H

#include "shape.h"

/* Computes a node's outputs from constant inputs (t[in].data); out[k] has room
 * for output k.  Supplied by the caller so the graph knows no backend. */
typedef onnxtl_status *(*otl_eval_fn)(void *ctx, const otl_node *n, const otl_tinfo *t,
                                      void *const *out);

typedef struct {
    const otl_graph *g;
    otl_node *nodes;    /* the graph's nodes as this plan runs them (a fusion may be undone) */
    otl_tinfo *t;       /* per value */
    int64_t *offset;    /* per value: byte offset in the arena, or -1 */
    size_t arena_bytes; /* peak activation memory */
    int *steps;         /* indices into nodes of those to run, in order */
    int n_steps;
    int *inputs;        /* values the caller supplies to a run, in this order: the */
    int n_inputs;       /* graph's inputs, or for a segment what other steps compute */
    int *outputs;       /* requested values */
    int n_outputs;
    void **owned; /* folded constants' buffers */
    int n_owned;
} otl_plan;

/* Small integer inputs (axes, shapes, pads fed as graph inputs) decide output
 * shapes, so a plan is built for their values, not only their shapes. */
bool otl_input_is_shape_like(const otl_tinfo *t);

/* inputs[i] describes g->inputs[i] (dtype, rank, dims; data for shape-like inputs).  outputs lists the
 * values to compute; nodes that do not lead to them are left out. */
onnxtl_status *otl_plan_build(const otl_graph *g, const otl_tinfo *inputs, const int *outputs,
                              int n_outputs, otl_eval_fn eval, void *eval_ctx, otl_plan **out);
void otl_plan_free(otl_plan *p);

/* The plan of steps [first, last) of p alone, with an arena of its own: its
 * inputs are the values those steps read that no step of theirs computes
 * (graph inputs, or what earlier steps compute), its outputs the values they
 * compute that later steps or p's outputs read.  It shares p's constants
 * and must not outlive p. */
onnxtl_status *otl_plan_segment(const otl_plan *p, int first, int last, otl_plan **out);

/* The plan of the steps after the one that computes v (p's input or one of
 * its steps' outputs), as otl_plan_segment makes it, whose one input is v:
 * the network from v on, as training downstream of a tensor sees it.  It
 * fails, naming the value, when those steps read anything else that
 * earlier steps compute, or when no step follows v. */
onnxtl_status *otl_plan_downstream(const otl_plan *p, int v, otl_plan **out);

/* The node that step i runs. */
static inline const otl_node *otl_plan_step(const otl_plan *p, int i) { return &p->nodes[p->steps[i]]; }

/* Input descriptions with every symbolic dimension set to batch. */
onnxtl_status *otl_plan_batch_inputs(const otl_graph *g, int64_t batch, otl_tinfo *inputs);

size_t otl_tinfo_bytes(const otl_tinfo *t);

#endif
