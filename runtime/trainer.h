/* Training a network's parameters.  A tape runs the plan forward keeping
 * every activation, then each step's gradient kernel in reverse, and the
 * trainer applies torch.optim's update.  The parameters are the float
 * initializers a Conv (weights, bias), a Gemm (B, C) or a BatchNormalization
 * (scale, shift) reads, copied into one block; their gradients and the
 * optimizer's moments take one block each.  BatchNormalization's statistics
 * stay frozen, or with bn_train are the batch's, the running ones updated
 * in a block of their own.  Only the CPU implements it so far (runtime/cpu/train.c). */
#ifndef OTL_TRAINER_H
#define OTL_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "plan.h"

/* As torch.optim's: SGD (with momentum), Adam, AdamW. */
typedef enum { OTL_OPTIM_SGD, OTL_OPTIM_ADAM, OTL_OPTIM_ADAMW } otl_optimizer;

typedef struct {
    otl_optimizer optim;
    float lr, momentum, weight_decay;
    /* Two parameter groups, as torch.optim's: those first read at a step
     * before head_step take lr_backbone, the others (the classifier) lr.
     * head_step 0: one group. */
    float lr_backbone;
    int head_step;
    bool dropout;  /* Dropout nodes drop while training; false: they pass everything (parity tests) */
    bool bn_train; /* BatchNormalization as torch's train mode: batch statistics, running ones updated */
    uint64_t seed; /* of dropout's masks: a hash of (seed, forward pass, node, element) */
    int threads;   /* 0: all cores */
} otl_trainer_config;

typedef struct otl_trainer otl_trainer;
typedef struct otl_tape otl_tape;

/* Whether step i of plan has a gradient here; if not, why says what is missing. */
bool otl_trainer_supports(const otl_plan *plan, int step, char *why, size_t why_n);

/* The parameters of plan's graph, read from plan (any plan of the graph:
 * shapes differ by batch only, and parameters are shared by all of them). */
onnxtl_status *otl_trainer_create(const otl_plan *plan, const otl_trainer_config *c, otl_trainer **out);
size_t otl_trainer_param_count(const otl_trainer *t);
/* Parameter i: its value in the graph, and its data as trained so far. */
int otl_trainer_param_value(const otl_trainer *t, size_t i);
const float *otl_trainer_param_data(const otl_trainer *t, size_t i);
/* What a checkpoint keeps of a trainer: views of its blocks, n floats each
 * (v NULL for SGD, which has one moment), and its counters. */
typedef struct {
    float *params, *m, *v;
    size_t n;
    float *stats; /* the running statistics, n_stats floats */
    size_t n_stats;
    int64_t steps, forwards;
} otl_trainer_state;

void otl_trainer_state_of(otl_trainer *t, otl_trainer_state *s);
/* After a checkpoint's blocks were read into the views: its counters, so
 * that the updates and dropout masks go on as they would have. */
void otl_trainer_restore_counters(otl_trainer *t, int64_t steps, int64_t forwards);

/* Scales both groups' learning rates from the next update on, as a
 * schedule does (torch.optim.lr_scheduler's factor of the base rates). */
void otl_trainer_set_lr_scale(otl_trainer *t, double scale);
/* With bn_train, the running statistics (BatchNormalization's mean and
 * variance inputs) it updates, held as the parameters are: statistic i's
 * value in the graph and its data so far. */
size_t otl_trainer_stat_count(const otl_trainer *t);
int otl_trainer_stat_value(const otl_trainer *t, size_t i);
const float *otl_trainer_stat_data(const otl_trainer *t, size_t i);
/* One optimizer update from the gradients added since the last, which it then zeroes. */
void otl_trainer_step(otl_trainer *t);
void otl_trainer_release(otl_trainer *t);

/* One batch size's activations and gradients, over plan (which must outlive it). */
onnxtl_status *otl_tape_create(otl_trainer *t, const otl_plan *plan, otl_tape **out);
/* Runs the plan on x (its one input); training: Dropout drops.  *out is the
 * plan's first output, valid until the next forward. */
onnxtl_status *otl_tape_forward(otl_tape *tp, const float *x, bool training, const float **out);
/* Adds into the trainer's gradients those of the last forward, given the
 * gradient of the loss with respect to its first output. */
onnxtl_status *otl_tape_backward(otl_tape *tp, const float *dout);
void otl_tape_release(otl_tape *tp);

#endif
