/* A classifier head (Linear, or Linear-ReLU-Dropout x2 - Linear) trained on
 * cached features with PyTorch's semantics: nn.Linear's initialisation,
 * softmax cross-entropy (mean), inverted dropout, torch.optim.Adam and SGD. */
#ifndef OTL_TRAIN_H
#define OTL_TRAIN_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include "events.h"
#include "feature_file.h"
#include "head_backend.h"

typedef struct {
    int n_layers;
    int dims[OTL_HEAD_MAX_LAYERS + 1]; /* in, hidden..., out */
    float *params;                     /* every weight and bias, one allocation */
    size_t n_params;
    float *w[OTL_HEAD_MAX_LAYERS];     /* [out, in], as torch stores Linear.weight */
    float *b[OTL_HEAD_MAX_LAYERS];
} otl_head;

/* n_layers Linear layers of the given sizes, initialised as nn.Linear does
 * (uniform in +-1/sqrt(fan_in)) from seed. */
onnxtl_status *otl_head_create(otl_head *h, int n_layers, const int *dims, uint64_t seed);
/* Replaces the parameters with DIR/w0.npy, b0.npy, w1.npy, ... (float32). */
onnxtl_status *otl_head_load_npy(otl_head *h, const char *dir);
onnxtl_status *otl_head_save_npy(const otl_head *h, const char *dir);
void otl_head_free(otl_head *h);

/* What training went through: per-epoch figures and every step's loss. */
typedef struct {
    otl_epoch_figures *epochs;
    int n_epochs, cap_epochs;
    double *step_loss;
    int64_t n_steps, cap_steps;
} otl_train_history;

onnxtl_status *otl_train_history_add_step(otl_train_history *h, double loss);
onnxtl_status *otl_train_history_add_epoch(otl_train_history *h, const otl_epoch_figures *e);
void otl_train_history_free(otl_train_history *h);

typedef struct {
    bool adam;      /* else SGD */
    float lr, momentum, weight_decay, dropout;
    int batch, epochs, threads;
    const char *device; /* NULL or "cpu", "cuda", "cuda:N" */
    onnxtl_precision precision; /* fp32, or tf32 on CUDA */
    uint64_t seed;
    bool shuffle;   /* reshuffle the training rows every epoch */
    bool keep_last; /* else keep the epoch with the best test accuracy */
    const otl_events *events; /* per-epoch figures and progress */
    /* If set, JSON lines: {"step", "epoch", "loss", "accuracy"} per step (the batch's
     * mean loss and accuracy), {"epoch", "train_loss", "train_accuracy", and the
     * evaluation split's "test_loss", "test_accuracy" or "val_..."} per epoch. */
    const char *log;
    otl_train_history *history; /* if set, filled as training goes */
} otl_train_options;

typedef struct {
    int best_epoch;
    double train_loss, train_acc; /* of the kept epoch */
    double test_loss, test_acc;   /* -1 without a test or val split */
    int eval_split;               /* SPLIT_TEST, SPLIT_VAL or -1 */
    size_t train_rows, eval_rows;
} otl_train_result;

/* Mean softmax cross-entropy of n rows of c logits against labels, as
 * torch's CrossEntropyLoss: returns the summed loss (divide by n for the
 * mean); dlogits (if not NULL) gets the mean's gradient; *correct counts
 * argmax hits. */
double otl_cross_entropy(const float *logits, const int *labels, int n, int c, float *dlogits, int *correct);
/* Fisher-Yates over x, drawing from a splitmix64 stream whose state is *state. */
void otl_shuffle(uint64_t *x, size_t n, uint64_t *state);
/* The --log file (none when path is NULL; append: a resumed run's goes on), and its closing, which reports a
 * failed write unless st already holds an error (st is returned). */
onnxtl_status *otl_train_log_open(const char *path, bool append, FILE **log);
/* A resumed run's log (opened to append): the lines up to epoch epochs_done's
 * figures, which its checkpoint holds; the step lines of the epoch it was
 * stopped in go, as it trains that epoch again.  A log without that epoch's
 * line is left as it is. */
onnxtl_status *otl_train_log_rewind(FILE *log, const char *path, int epochs_done);
onnxtl_status *otl_train_log_close(FILE *log, const char *path, onnxtl_status *st);
/* One --log line for an epoch's figures. */
void otl_train_log_epoch(FILE *log, const otl_epoch_figures *e);

/* The rows of each split: the training ones (split train, or all when
 * unsplit), and the test (else val) ones, whose split eval_split names (-1: none).
 * A file of extract --views K lists each training image by its first view's
 * row; its views follow it. */
typedef struct {
    uint64_t *train, *eval;
    size_t n_train, n_eval;
    int eval_split;
    int views;
} otl_row_splits;

/* How far past its first view's row a training image's row lies in epoch
 * `epoch` (from 1): the views in turn, so each epoch sees another augmentation. */
static inline uint64_t otl_epoch_view(int views, int epoch) { return (uint64_t)((epoch - 1) % views); }

/* Fails, naming the file, when f has no training rows. */
onnxtl_status *otl_features_splits(const otl_features *f, otl_row_splits *s);
void otl_row_splits_free(otl_row_splits *s);
/* Every row intact and every feature finite, checked on all cores before any training. */
onnxtl_status *otl_features_check_finite(const otl_features *f);

/* Trains h on f's training rows (split train, or all when unsplit) and
 * evaluates each epoch on the test (else val) split. */
onnxtl_status *otl_train(otl_head *h, const otl_features *f, const otl_train_options *o, otl_train_result *r);

#endif
