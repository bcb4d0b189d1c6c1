/* Training a whole network on images: every Conv and Gemm parameter of the
 * model, from its own weights (random ones: training from scratch;
 * pretrained ones: a full fine-tune), with images decoded every epoch. */
#ifndef OTL_TRAIN_NET_H
#define OTL_TRAIN_NET_H

#include "events.h"
#include "preprocess.h"
#include "trainer.h"

typedef struct {
    const char *model_path, *data_dir, *out_path;
    otl_preprocess_spec pre; /* over the model's and torchvision's defaults */
    otl_trainer_config trainer;
    int batch, epochs, decoders;
    bool shuffle;            /* a new order of the training images every epoch (seed) */
    const char *log;         /* JSON lines, as fit-head's --log writes them */
    const otl_events *events;
} otl_train_net_options;

typedef struct {
    int epochs;
    double train_loss, train_acc;
    double eval_loss, eval_acc; /* -1 without a test or val split */
    const char *eval_split;     /* "test", "val" or NULL */
    size_t train_images, eval_images, skipped;
    int64_t steps, params;
    double seconds;
} otl_train_net_result;

/* Trains on DATA_DIR's training split, evaluates each epoch on its test (else
 * val) split, and writes the model with its trained weights to out_path. */
onnxtl_status *otl_train_net(const otl_train_net_options *o, otl_train_net_result *r);

#endif
