/* Shared pieces of the command-line tool. */
#ifndef OTL_CLI_H
#define OTL_CLI_H

#include <stdbool.h>

#include "feature_file.h"
#include "onnxtl.h"

enum { EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Prints "onnxtl: <line>" to stderr: the backends' diagnostics (onnxtl_options.log). */
void cli_log_line(void *ctx, const char *line);
/* Prints "onnxtl: LABEL: TEXT" to stderr, LABEL ("error" or "warning") in
 * colour on a terminal unless NO_COLOR is set. */
void cli_message(const char *label, const char *text);
/* Prints "onnxtl: error: <message>" to stderr, releases st, and returns EXIT_FAIL. */
int cli_fail(onnxtl_status *st);
/* A number for opt: 0, or a usage error (EXIT_USAGE) naming cmd. */
int cli_parse_float(const char *cmd, const char *opt, const char *v, float *out);
/* The index of v among names[0..n), or -1. */
int cli_choice(const char *v, const char *const *names, int n);
/* The number of newline-terminated lines in text. */
size_t cli_line_count(const char *text);
/* Prints a usage error and a hint to stderr; returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a positive integer option value; false (with a message) if it is not one. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out);

/* Prints help to stdout when the first argument is --help or -h; true if it did. */
bool cli_help_asked(int argc, char **argv, const char *help);

/* Handles --device and --precision into opts; returns 1 if opt was one of
 * them (and sets *rc to EXIT_USAGE on a bad value), 0 otherwise. */
int cli_device_option(const char *cmd, const char *opt, const char *value, onnxtl_options *opts, int *rc);
#define CLI_DEVICE_HELP                                                                                 \
    "  --device D       cpu (default), cuda or cuda:N (needs a build with make CUDA=1)\n"             \
    "  --precision P    on cuda: fp32 (true fp32), tf32, fp16 (default) or bf16; on the CPU:\n"    \
    "                   fp32 (default), bf16 convolutions (needs AVX512_BF16 or AMX) or int8\n" \
    "                   convolutions (scales from a calibration on your images)\n"

/* Handles the preprocessing options into spec, checking each value; returns
 * 1 if opt was one of them (and sets *rc to EXIT_USAGE on a bad value), 0 otherwise. */
int cli_preprocess_option(const char *cmd, const char *opt, const char *value, otl_preprocess_spec *spec, int *rc);
#define CLI_PREPROCESS_HELP                                                                                      \
    "  --resize R       N (shorter side), HxW, or none\n"                                                       \
    "  --crop C         N, HxW, or none\n"                                                                      \
    "  --mean a,b,c     per channel of the network's input, in its order\n"                                    \
    "  --std a,b,c\n"                                                                                          \
    "  --channels O     rgb or bgr: the network's channel order\n"                                              \
    "  --scale S        1 (pixels 0 to 1, as ToTensor) or 255 (0 to 255, Caffe-era and CoreML models)\n"

/* Rows per split and class (named by classes[label]) and the value range. */
void cli_print_feature_stats(const otl_features_stats *s, const char *const *classes);

#endif
