/* train's checkpoint: the trainer's parameters, moments and counters after
 * an epoch, and that epoch's figures, so that train --resume goes on from
 * the last finished epoch as if it had never stopped.  It sits beside the
 * model train writes (OUT.state), written whole or not at all.
 *
 * Layout (little-endian): "OTLSTATE", u32 version, u32 fingerprint bytes,
 * the fingerprint, i32 epoch, u32 moments (1 SGD, 2 Adam), i64 steps,
 * i64 forwards, u64 floats per block, u64 floats of running statistics,
 * f64 train loss, train accuracy, evaluation loss, evaluation accuracy,
 * each with a CRC-32C after it: that head, the params block, the moments'
 * blocks, the running statistics (--bn train). */
#ifndef OTL_CHECKPOINT_H
#define OTL_CHECKPOINT_H

#include "events.h"
#include "trainer.h"

typedef struct {
    int epoch; /* the last finished one */
    double train_loss, train_acc, eval_loss, eval_acc;
} otl_checkpoint_epoch;

/* fingerprint: text naming everything the training's course depends on; a
 * checkpoint is resumed only by a run whose fingerprint is the same. */
onnxtl_status *otl_checkpoint_write(const char *path, const char *fingerprint, const otl_checkpoint_epoch *e,
                                    const otl_trainer_state *s);
/* Fills s's blocks (their sizes as s->n says) and *e from path, and sets
 * s's counters; fails, naming path, on anything but a checkpoint of this
 * very training. */
onnxtl_status *otl_checkpoint_read(const char *path, const char *fingerprint, otl_checkpoint_epoch *e,
                                   otl_trainer_state *s);

#endif
