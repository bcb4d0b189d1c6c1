/* onnxtl command line: dispatches to one function per command. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"


static const char usage_text[] =
    "onnxtl " ONNXTL_VERSION ": transfer learning on ONNX models, in C\n"
    "\n"
    "usage: onnxtl COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info MODEL                      describe a model: inputs, outputs, ops, parameters,\n"
    "                                  memory, and the feature tensor that feeds its head\n"
    "  infer MODEL --input NAME=X.npy  run a model on NumPy arrays, write .npy outputs\n"
    "  extract MODEL DATA_DIR          run the frozen backbone over image folders and cache\n"
    "                                  the features in a crash-safe, resumable features file\n"
    "  features FILE [--npy PREFIX]    describe a features file, or export it for NumPy\n"
    "  merge OUT IN...                 merge the shards of one extraction\n"
    "  fit-head FEATURES               train a new classifier head, write model.onnx\n"
    "  train MODEL DATA_DIR            train a whole network on image folders (from scratch\n"
    "                                  or a full fine-tune), write trained.onnx\n"
    "  run MODEL IMAGE_OR_DIR...       classify JPEGs with a fine-tuned model\n"
    "  eval MODEL DATA_DIR             accuracy, precision/recall and confusion matrix\n"
    "\n"
    "Run 'onnxtl COMMAND --help' for a command's options.\n"
    "\n"
    "exit status:\n"
    "  0                               success\n"
    "  1                               bad input or a failure, named in one line on stderr\n"
    "                                  (run: also when an image could not be classified)\n"
    "  2                               usage error: unknown command or option, bad value\n"
    "\n"
    "environment:\n"
    "  NO_COLOR                        set: no colour in messages, even on a terminal\n"
    "  ONNXTL_LOG=1                    print which backend runs each node when a session plans\n"
    "  ONNXTL_FALLBACK_OPS=A,B         run these ops on a CPU backend of their own (testing)\n"
    "  ONNXTL_CACHE_DIR                where tuned CUDA choices are kept (default\n"
    "                                  $XDG_CACHE_HOME/onnxtl or ~/.cache/onnxtl)\n"
    "  ONNXTL_CUDA_LOG=1, ONNXTL_CUDNN=legacy\n"
    "                                  CUDA diagnostics; cuDNN's legacy API for every convolution\n";

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"info", cmd_info},   {"infer", cmd_infer},       {"extract", cmd_extract}, {"features", cmd_features},
    {"merge", cmd_merge}, {"fit-head", cmd_fit_head}, {"run", cmd_run},         {"eval", cmd_eval},
    {"train", cmd_train},
};

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("onnxtl " ONNXTL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "onnxtl: unknown command '%s'\n\n%s", argv[1], usage_text);
    return EXIT_USAGE;
}
