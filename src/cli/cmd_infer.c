/* onnxtl infer: run a model on .npy inputs and write .npy outputs. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"
#include "status.h"

static const char infer_help[] =
    "usage: onnxtl infer MODEL --input NAME=IN.npy [...] [--output [NAME=]OUT.npy ...] [options]\n"
    "\n"
    "Runs MODEL on NumPy arrays (any batch size). Every model input needs an\n"
    "--input. An --output without NAME= takes the model's outputs in order;\n"
    "with NAME= it may name any tensor of the graph. Without --output, the first\n"
    "model output goes to out.npy.\n"
    "  --threads N      worker threads (default: all cores)\n" CLI_DEVICE_HELP;

#define MAX_ARGS 64

typedef struct {
    const char *name;
    const char *path;
} binding;

/* Splits NAME=PATH; name is NULL when there is no '='. */
static binding split_binding(char *arg) {
    char *eq = strchr(arg, '=');
    if (!eq) return (binding){NULL, arg};
    *eq = '\0';
    return (binding){arg, eq + 1};
}

static int parse_args(int argc, char **argv, binding *ins, int *n_in, binding *outs, int *n_out,
                      onnxtl_options *opts) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        int rc = 0;
        if ((!strcmp(a, "--input") || !strcmp(a, "--output") || !strcmp(a, "--threads") || !strcmp(a, "--device") ||
             !strcmp(a, "--precision")) && !has_value)
            return cli_usage("infer", "%s needs a value", a);
        if (has_value && cli_device_option("infer", a, argv[i + 1], opts, &rc)) {
            if (rc) return rc;
            i++;
            continue;
        }
        if (!strcmp(a, "--input")) {
            if (*n_in == MAX_ARGS) return cli_usage("infer", "too many --input");
            ins[(*n_in)++] = split_binding(argv[++i]);
            if (!ins[*n_in - 1].name) return cli_usage("infer", "--input takes NAME=FILE.npy");
        } else if (!strcmp(a, "--output")) {
            if (*n_out == MAX_ARGS) return cli_usage("infer", "too many --output");
            outs[(*n_out)++] = split_binding(argv[++i]);
        } else if (!strcmp(a, "--threads")) {
            if (!cli_parse_int("infer", "--threads", argv[++i], 1, 1024, &opts->threads)) return EXIT_USAGE;
        } else {
            return cli_usage("infer", "unknown option '%s'", a);
        }
    }
    return 0;
}

static onnxtl_status *name_outputs(const onnxtl_model *m, binding *outs, int *n_out) {
    if (*n_out == 0) {
        outs[0] = (binding){NULL, "out.npy"};
        *n_out = 1;
    }
    for (int i = 0, positional = 0; i < *n_out; i++) {
        if (outs[i].name) continue;
        if ((size_t)positional >= onnxtl_model_output_count(m))
            return otl_error(ONNXTL_ERR_ARG, "more --output files than the model has outputs (%zu)",
                             onnxtl_model_output_count(m));
        onnxtl_tensor d;
        onnxtl_model_output(m, (size_t)positional++, &d);
        outs[i].name = d.name;
    }
    return NULL;
}

static onnxtl_status *run_infer(const char *model_path, binding *ins, int n_in, binding *outs,
                                int n_out, const onnxtl_options *opts) {
    onnxtl_model *m = NULL;
    onnxtl_session *s = NULL;
    onnxtl_tensor in_t[MAX_ARGS] = {0}, out_t[MAX_ARGS] = {0};
    onnxtl_status *st = onnxtl_model_load(model_path, &m);
    if (!st) st = name_outputs(m, outs, &n_out);
    for (int i = 0; !st && i < n_in; i++) {
        st = otl_npy_read(ins[i].path, &in_t[i]);
        in_t[i].name = ins[i].name;
    }
    if (!st) st = onnxtl_session_create(m, opts, &s);
    for (int i = 0; i < n_out; i++) out_t[i].name = outs[i].name;
    if (!st) st = onnxtl_session_run(s, in_t, (size_t)n_in, out_t, (size_t)n_out);
    for (int i = 0; !st && i < n_out; i++) st = otl_npy_write(outs[i].path, &out_t[i]);
    for (int i = 0; i < n_in; i++) free(in_t[i].data);
    onnxtl_session_release(s);
    onnxtl_model_release(m);
    return st;
}

int cmd_infer(int argc, char **argv) {
    if (cli_help_asked(argc, argv, infer_help)) return 0;
    if (argc < 2 || argv[1][0] == '-') return cli_usage("infer", "expected MODEL first");
    binding ins[MAX_ARGS], outs[MAX_ARGS];
    int n_in = 0, n_out = 0;
    onnxtl_options opts = {.log = cli_log_line};
    int rc = parse_args(argc, argv, ins, &n_in, outs, &n_out, &opts);
    if (rc) return rc;
    if (!n_in) return cli_usage("infer", "give each model input with --input NAME=FILE.npy");
    onnxtl_status *st = run_infer(argv[1], ins, n_in, outs, n_out, &opts);
    return st ? cli_fail(st) : 0;
}
