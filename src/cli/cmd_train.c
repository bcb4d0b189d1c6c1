/* onnxtl train: train a whole network on image folders and write it as ONNX. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "progress.h"
#include "train_net.h"

static const char train_help[] =
    "usage: onnxtl train MODEL DATA_DIR|FEATURES [--from TENSOR] [options]\n"
    "\n"
    "Trains every Conv, Gemm and BatchNormalization parameter of MODEL after\n"
    "TENSOR (without --from: all of them, training from scratch when MODEL's\n"
    "weights are random, a full fine-tune when they are pretrained) and\n"
    "evaluates each epoch on the test (else val) split.  The layers before\n"
    "TENSOR stay frozen.  The data are either\n"
    "  DATA_DIR   images in train/<class>/, test/<class>/, decoded every epoch,\n"
    "             the frozen layers run on them every epoch; or\n"
    "  FEATURES   what 'onnxtl extract MODEL DATA_DIR --cut TENSOR' cached: the\n"
    "             frozen layers' output, computed once (--from defaults to its cut);\n"
    "             with 'extract --views K', each epoch the next augmented view.\n"
    "Without --head, MODEL must end in one logit per class (a final Softmax is\n"
    "skipped).  The loss is softmax cross-entropy, as torch's\n"
    "CrossEntropyLoss.  The trained model is MODEL with its trained weights, in\n"
    "standard ONNX, written after every epoch.\n"
    "\n"
    "Ops with a gradient so far: Conv (any groups, strides, padding, dilation),\n"
    "Gemm, Relu, MaxPool, AveragePool, Add, GlobalAveragePool, BatchNormalization\n"
    "(see --bn), Flatten, Reshape, Dropout.\n"
    "\n"
    "examples:\n"
    "  onnxtl train small_cnn.onnx data/ --resize 64x64 --crop none --mean 0,0,0 --std 1,1,1\n"
    "  onnxtl extract resnet18.onnx data/ --cut /layer3/layer3.1/relu_1/Relu_output_0 -o layer3.bin\n"
    "  onnxtl train resnet18.onnx layer3.bin --epochs 20     (layer4 and fc, on the cache)\n"
    "\n"
    "options:\n"
    "  -o FILE          model to write (default trained.onnx), after every epoch, with its\n"
    "                   checkpoint FILE.state (parameters, optimizer moments, counters)\n"
    "  --resume         go on from FILE.state after the last finished epoch, as if the run\n"
    "                   had never stopped (same command; --epochs may grow unless cosine)\n"
    "  --from TENSOR    train only what follows TENSOR, a tensor of MODEL's graph by its\n"
    "                   ONNX name (as Netron shows it)\n"
    "  --head H         none (default): keep MODEL's own last layer; auto, linear or mlp:\n"
    "                   replace its classifier as fit-head does (nn.Linear's initialisation\n"
    "                   from --seed; Dropout 0.5 in an MLP), one output per class, written\n"
    "                   to FILE with the class names and preprocessing for onnxtl run\n"
    "  --bn B           frozen (default): BatchNormalization keeps its statistics (the\n"
    "                   Keras guide's advice), scale and shift trained; train: batch\n"
    "                   statistics, running ones updated, as torch's train mode\n"
    "  --optim O        adam (default), adamw or sgd, as torch.optim's (SGD with --momentum)\n"
    "  --lr X           default 1e-5\n"
    "  --lr-backbone X  the layers before the classifier learn at X, the classifier at --lr\n"
    "                   (torch.optim's parameter groups; default: all at --lr)\n"
    "  --schedule S     constant (default), cosine (CosineAnnealingLR over the epochs,\n"
    "                   down to 0) or step (StepLR: times --gamma every --step-size epochs)\n"
    "  --step-size N    default 1\n"
    "  --gamma G        default 0.1\n"
    "  --momentum M     SGD momentum (default 0)\n"
    "  --weight-decay W as torch.optim applies it: L2 in the gradient for adam and sgd\n"
    "                   (default 0), decoupled for adamw (default 0.01)\n"
    "  --augment A      flip, crop or flip,crop: each training image's RandomHorizontalFlip\n"
    "                   and RandomResizedCrop (torchvision's parameters: scale 0.08 to 1,\n"
    "                   ratio 3/4 to 4/3, to the network's input size), drawn from --seed,\n"
    "                   the epoch and the image, so runs repeat; evaluation is not augmented\n"
    "  --batch N        default 16\n"
    "  --epochs N       default 5\n"
    "  --seed S         shuffling and dropout (default 0)\n"
    "  --threads N      default: all cores\n"
    "  --decoders N     JPEG decoding threads (default 1)\n"
    "  --no-shuffle     keep the images' order (reproducible comparisons)\n"
    "  --no-dropout     Dropout nodes keep every value while training (parity tests)\n"
    "  --log FILE       JSON lines: each step's loss, accuracy and learning rate, each epoch's figures,\n"
    "                   written as they come; --resume keeps the finished epochs' lines\n"
    "  --quiet          no progress or per-epoch lines\n"
    "  --json           the result as one JSON object on stdout\n"
    "\n"
    "preprocessing, for DATA_DIR (a features file keeps its own): as extract's\n"
    "(torchvision's ImageNet evaluation transform, changed by what the model\n"
    "states, then by these options); the small CNN of\n"
    "tools/export_small_cnn.py wants --resize 64x64 --crop none --mean 0,0,0 --std 1,1,1:\n"
    CLI_PREPROCESS_HELP;

typedef struct {
    otl_train_net_options o;
    const char *optim, *schedule;
    bool weight_decay_set, quiet, json;
} train_args;

static int parse_value(train_args *a, const char *opt, const char *v) {
    int n, rc = 0;
    otl_trainer_config *t = &a->o.trainer;
    if (cli_preprocess_option("train", opt, v, &a->o.pre, &rc)) return rc;
    if (!strcmp(opt, "-o")) a->o.out_path = v;
    else if (!strcmp(opt, "--from")) a->o.from = v;
    else if (!strcmp(opt, "--head")) a->o.head = v;
    else if (!strcmp(opt, "--augment")) {
        onnxtl_status *st = otl_augment_parse(v, &a->o.augment);
        if (st) {
            rc = cli_usage("train", "%s", onnxtl_status_message(st));
            onnxtl_status_release(st);
            return rc;
        }
    }
    else if (!strcmp(opt, "--bn")) {
        if (strcmp(v, "frozen") && strcmp(v, "train")) return cli_usage("train", "--bn is frozen or train");
        a->o.trainer.bn_train = !strcmp(v, "train");
    }
    else if (!strcmp(opt, "--optim")) a->optim = v;
    else if (!strcmp(opt, "--log")) a->o.log = v;
    else if (!strcmp(opt, "--lr")) return cli_parse_float("train", opt, v, &t->lr);
    else if (!strcmp(opt, "--momentum")) return cli_parse_float("train", opt, v, &t->momentum);
    else if (!strcmp(opt, "--schedule")) a->schedule = v;
    else if (!strcmp(opt, "--lr-backbone")) return cli_parse_float("train", opt, v, &t->lr_backbone);
    else if (!strcmp(opt, "--gamma")) return cli_parse_float("train", opt, v, &a->o.gamma);
    else if (!strcmp(opt, "--step-size")) return cli_parse_int("train", opt, v, 1, 1 << 20, &a->o.step_size) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--weight-decay")) {
        a->weight_decay_set = true;
        return cli_parse_float("train", opt, v, &t->weight_decay);
    }
    else if (!strcmp(opt, "--batch")) return cli_parse_int("train", opt, v, 1, 4096, &a->o.batch) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--epochs")) return cli_parse_int("train", opt, v, 1, 1 << 20, &a->o.epochs) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--threads")) return cli_parse_int("train", opt, v, 1, 1024, &t->threads) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--decoders")) return cli_parse_int("train", opt, v, 1, 256, &a->o.decoders) ? 0 : EXIT_USAGE;
    else if (!strcmp(opt, "--seed")) {
        if (!cli_parse_int("train", opt, v, 0, 1 << 30, &n)) return EXIT_USAGE;
        t->seed = (uint64_t)n;
    } else return cli_usage("train", "unknown option '%s'", opt);
    return 0;
}

static int parse_args(int argc, char **argv, train_args *a) {
    const char *pos[2] = {0};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) a->quiet = true;
        else if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--no-shuffle")) a->o.shuffle = false;
        else if (!strcmp(s, "--no-dropout")) a->o.trainer.dropout = false;
        else if (!strcmp(s, "--resume")) a->o.resume = true;
        else if (s[0] == '-' && s[1]) {
            if (i + 1 >= argc) return cli_usage("train", "%s needs a value", s);
            int rc = parse_value(a, s, argv[++i]);
            if (rc) return rc;
        } else if (n_pos < 2) pos[n_pos++] = s;
        else return cli_usage("train", "unexpected argument '%s'", s);
    }
    if (n_pos != 2) return cli_usage("train", "expected MODEL and DATA_DIR or FEATURES");
    a->o.model_path = pos[0], a->o.data = pos[1];
    otl_trainer_config *t = &a->o.trainer;
    static const char *const optims[] = {"sgd", "adam", "adamw"}, *const schedules[] = {"constant", "cosine", "step"};
    int optim = cli_choice(a->optim, optims, 3), schedule = cli_choice(a->schedule, schedules, 3);
    static const char *const heads[] = {"none", "auto", "linear", "mlp"};
    if (a->o.head && cli_choice(a->o.head, heads, 4) < 0) return cli_usage("train", "--head is none, auto, linear or mlp");
    if (optim < 0) return cli_usage("train", "--optim is adam, adamw or sgd");
    if (schedule < 0) return cli_usage("train", "--schedule is constant, cosine or step");
    if (!(t->lr > 0) || t->lr_backbone < 0 || t->momentum < 0 || t->weight_decay < 0 || !(a->o.gamma > 0))
        return cli_usage("train", "--lr and --gamma must be positive, --lr-backbone, --momentum and --weight-decay >= 0");
    t->optim = (otl_optimizer)optim;
    a->o.augment.seed = t->seed;
    a->o.schedule = (otl_lr_schedule)schedule;
    if (t->optim == OTL_OPTIM_ADAMW && !a->weight_decay_set) t->weight_decay = 0.01f; /* torch's default */
    return 0;
}

static void print_json(const train_args *a, const otl_train_net_result *r) {
    cli_json j = cli_json_start(stdout);
    cli_json_object(&j, NULL);
    cli_json_str(&j, "model", a->o.out_path);
    cli_json_int(&j, "parameter_tensors", r->params);
    cli_json_int(&j, "epochs", r->epochs);
    cli_json_int(&j, "steps", r->steps);
    cli_json_int(&j, "train_images", (long long)r->train_images);
    cli_json_int(&j, "skipped", (long long)r->skipped);
    cli_json_num(&j, "train_loss", r->train_loss);
    cli_json_num(&j, "train_accuracy", r->train_acc);
    cli_json_str(&j, "eval_split", r->eval_split);
    cli_json_num(&j, "eval_loss", r->eval_split ? r->eval_loss : -1);
    cli_json_num(&j, "eval_accuracy", r->eval_split ? r->eval_acc : -1);
    cli_json_num(&j, "seconds", r->seconds);
    cli_json_close(&j);
}

int cmd_train(int argc, char **argv) {
    if (cli_help_asked(argc, argv, train_help)) return 0;
    train_args a = {.o = {.out_path = "trained.onnx", .batch = 16, .epochs = 5, .decoders = 1, .shuffle = true,
                          .trainer = {.lr = 1e-5f, .dropout = true}, .step_size = 1, .gamma = 0.1},
                    .optim = "adam", .schedule = "constant"};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    cli_reporter rep;
    const otl_events events = cli_reporter_events(&rep, a.quiet || a.json);
    a.o.events = &events;
    otl_train_net_result r;
    onnxtl_status *st = otl_train_net(&a.o, &r);
    if (st) return cli_fail(st);
    if (a.json) print_json(&a, &r);
    else if (!a.quiet) {
        printf("trained %lld steps in %.1f s: train acc %.4f", (long long)r.steps, r.seconds, r.train_acc);
        if (r.eval_split) printf(", %s acc %.4f", r.eval_split, r.eval_acc);
        printf("\nwrote %s\n", a.o.out_path);
    }
    return 0;
}
