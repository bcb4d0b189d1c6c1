/* Training a network's parameters: every Conv, Gemm and BatchNormalization
 * parameter of the model downstream of a tensor (its input: all of them),
 * from its own weights (random ones: training from scratch; pretrained ones:
 * fine-tuning).  The data are images decoded every epoch, the frozen part
 * (if any) run on them by a session; or the rows of a features file that
 * extract --cut TENSOR wrote, which the frozen part is never run again for. */
#ifndef OTL_TRAIN_NET_H
#define OTL_TRAIN_NET_H

#include "augment.h"
#include "events.h"
#include "preprocess.h"
#include "trainer.h"

/* The learning rate over the epochs, as torch.optim.lr_scheduler's
 * CosineAnnealingLR (T_max the epochs, down to 0) and StepLR step each epoch. */
typedef enum { OTL_SCHEDULE_CONSTANT, OTL_SCHEDULE_COSINE, OTL_SCHEDULE_STEP } otl_lr_schedule;

typedef struct {
    const char *model_path, *out_path;
    const char *data;        /* DATA_DIR, or a features file */
    const char *from;        /* the tensor training starts at; NULL: the model's input, or the features' cut */
    const char *head;        /* NULL or "none": the model's own classifier; auto, linear, mlp: a new one, as
                              * fit-head's, nn.Linear's initialisation from the seed, Dropout 0.5 in an MLP */
    otl_preprocess_spec pre; /* over the model's and torchvision's defaults; a features file fixes its own */
    otl_trainer_config trainer; /* its head_step is found here, when lr_backbone asks for two groups */
    otl_lr_schedule schedule;
    int step_size;              /* OTL_SCHEDULE_STEP: epochs between decays by gamma */
    float gamma;
    int batch, epochs, decoders;
    bool shuffle;            /* a new order of the training images every epoch (seed) */
    const char *log;         /* JSON lines, as fit-head's --log writes them */
    otl_augment augment;     /* training images (not the evaluation's) augmented, when crop or flip is set */
    bool resume;             /* go on from out_path's checkpoint (out_path.state), written after every epoch */
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

/* Trains on the data's training split, evaluates each epoch on its test (else
 * val) split, and writes the model with its trained weights to out_path. */
onnxtl_status *otl_train_net(const otl_train_net_options *o, otl_train_net_result *r);

#endif
