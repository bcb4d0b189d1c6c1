/* Helpers every command shares: messages, option values, device options. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "dtype.h"

void cli_log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "onnxtl: %s\n", line);
}

/* Colour only where a person reads it, and never with NO_COLOR set (no-color.org). */
static bool colour_on_stderr(void) {
    const char *no_colour = getenv("NO_COLOR"), *term = getenv("TERM");
    return isatty(STDERR_FILENO) && !(no_colour && *no_colour) && !(term && !strcmp(term, "dumb"));
}

void cli_message(const char *label, const char *text) {
    const bool error = !strcmp(label, "error");
    if (colour_on_stderr()) fprintf(stderr, "onnxtl: \033[1;%sm%s:\033[0m %s\n", error ? "31" : "33", label, text);
    else fprintf(stderr, "onnxtl: %s: %s\n", label, text);
}

int cli_fail(onnxtl_status *st) {
    cli_message("error", onnxtl_status_message(st));
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

int cli_parse_float(const char *cmd, const char *opt, const char *v, float *out) {
    char *end;
    float x = v ? strtof(v, &end) : 0;
    if (!v || !*v || *end || x != x) return cli_usage(cmd, "%s needs a number, got '%s'", opt, v ? v : "");
    *out = x;
    return 0;
}

int cli_choice(const char *v, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) return i;
    return -1;
}

size_t cli_line_count(const char *text) {
    size_t n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

int cli_device_option(const char *cmd, const char *opt, const char *value, onnxtl_options *opts, int *rc) {
    if (!strcmp(opt, "--device")) {
        opts->device = value;
        if (!strncmp(value, "cuda", 4) && opts->precision == ONNXTL_PRECISION_FP32 && !opts->precision_set)
            opts->precision = ONNXTL_PRECISION_FP16;
        return 1;
    }
    if (strcmp(opt, "--precision")) return 0;
    if (otl_precision_parse(value, &opts->precision)) {
        opts->precision_set = 1;
        return 1;
    }
    *rc = cli_usage(cmd, "--precision is fp32, tf32, fp16, bf16 or int8, got '%s'", value);
    return 1;
}

int cli_preprocess_option(const char *cmd, const char *opt, const char *value, otl_preprocess_spec *spec, int *rc) {
    const char **field = !strcmp(opt, "--resize")     ? &spec->resize
                         : !strcmp(opt, "--crop")     ? &spec->crop
                         : !strcmp(opt, "--mean")     ? &spec->mean
                         : !strcmp(opt, "--std")      ? &spec->std
                         : !strcmp(opt, "--channels") ? &spec->channels
                         : !strcmp(opt, "--scale")    ? &spec->scale
                                                      : NULL;
    if (!field) return 0;
    *field = value;
    otl_preprocess check;
    otl_preprocess_default(&check);
    onnxtl_status *st = otl_preprocess_parse(&check, spec);
    if (st) {
        *rc = cli_usage(cmd, "%s", onnxtl_status_message(st));
        onnxtl_status_release(st);
    }
    return 1;
}

void cli_print_feature_stats(const otl_features_stats *s, const char *const *classes) {
    printf("rows: %llu\n", (unsigned long long)s->rows);
    for (int sp = 0; sp < SPLIT_COUNT; sp++) {
        if (!s->split_rows[sp]) continue;
        printf("  %-5s %6llu:", otl_split_names[sp], (unsigned long long)s->split_rows[sp]);
        for (int c = 0; c < s->n_classes; c++)
            printf(" %s %llu%s", classes[c], (unsigned long long)s->class_rows[sp * s->n_classes + c],
                   c + 1 < s->n_classes ? "," : "");
        printf("\n");
    }
    if (s->rows)
        printf("values: min %.4g, max %.4g, mean %.4g, non-finite %llu\n", s->min, s->max,
               s->sum / ((double)s->values - (double)s->nonfinite), (unsigned long long)s->nonfinite);
}
