/* onnxtl command line: dispatches to one function per command. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define ONNXTL_VERSION "0.1.0"

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
    "  run MODEL IMAGE_OR_DIR...       classify JPEGs with a fine-tuned model\n"
    "  eval MODEL DATA_DIR             accuracy, precision/recall and confusion matrix\n"
    "\n"
    "Run 'onnxtl COMMAND --help' for a command's options.\n";

void cli_log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "onnxtl: %s\n", line);
}

int cli_fail(onnxtl_status *st) {
    fprintf(stderr, "onnxtl: error: %s\n", onnxtl_status_message(st));
    onnxtl_status_release(st);
    return EXIT_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "onnxtl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'onnxtl %s --help' for usage.\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || v < lo || v > hi) {
        cli_usage(cmd, "%s needs a whole number from %d to %d, got '%s'", opt, lo, hi, s ? s : "");
        return 0;
    }
    *out = (int)v;
    return 1;
}

bool cli_help_asked(int argc, char **argv, const char *help) {
    if (argc < 2 || (strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))) return false;
    fputs(help, stdout);
    return true;
}

int cli_device_option(const char *cmd, const char *opt, const char *value, onnxtl_options *opts, int *rc) {
    static const char *const names[] = {"fp32", "tf32", "fp16", "bf16"};
    if (!strcmp(opt, "--device")) {
        opts->device = value;
        if (!strncmp(value, "cuda", 4) && opts->precision == ONNXTL_PRECISION_FP32 && !opts->precision_set)
            opts->precision = ONNXTL_PRECISION_FP16;
        return 1;
    }
    if (strcmp(opt, "--precision")) return 0;
    for (int i = 0; i < 4; i++)
        if (!strcmp(value, names[i])) {
            opts->precision = (onnxtl_precision)i;
            opts->precision_set = 1;
            return 1;
        }
    *rc = cli_usage(cmd, "--precision is fp32, tf32, fp16 or bf16, got '%s'", value);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("onnxtl " ONNXTL_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "infer")) return cmd_infer(argc - 1, argv + 1);
    if (!strcmp(argv[1], "extract")) return cmd_extract(argc - 1, argv + 1);
    if (!strcmp(argv[1], "features")) return cmd_features(argc - 1, argv + 1);
    if (!strcmp(argv[1], "merge")) return cmd_merge(argc - 1, argv + 1);
    if (!strcmp(argv[1], "fit-head")) return cmd_fit_head(argc - 1, argv + 1);
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 1, argv + 1);
    fprintf(stderr, "onnxtl: unknown command '%s'\n\n%s", argv[1], usage_text);
    return EXIT_USAGE;
}
