/* onnxtl info: what a model is and what onnxtl will do with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dtype.h"
#include "model.h"

static const char info_help[] =
    "usage: onnxtl info MODEL [--device D]\n"
    "\n"
    "Prints the IR version, opsets, producer, inputs and outputs, an op census\n"
    "(after BatchNorm folding and Identity/Dropout removal), the parameter count,\n"
    "the peak activation memory at batch 1, and the tensor that feeds the\n"
    "classifier head (what 'extract' caches).\n"
    "\n"
    "options:\n"
    "  --device D       also list the nodes that the backend of D (cpu, cuda, cuda:N)\n"
    "                   does not run and that fall back to the CPU (no GPU needed)\n";

static void print_dims(const int64_t *dims, int rank) {
    printf("[");
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) printf("%sN", i ? ", " : "");
        else printf("%s%lld", i ? ", " : "", (long long)dims[i]);
    }
    printf("]");
}

static void print_value(const otl_value *v) {
    printf("  %-24s %-8s ", v->name, otl_dtype_name(v->dtype));
    if (v->rank < 0) printf("(shape unknown)");
    else print_dims(v->dims, v->rank);
    printf("\n");
}

static void print_census(const otl_graph *g) {
    int live[OP_COUNT] = {0}, removed[OP_COUNT] = {0};
    for (int i = 0; i < g->n_nodes; i++) (g->nodes[i].removed ? removed : live)[g->nodes[i].op]++;
    printf("ops (%d nodes):\n", g->n_nodes);
    for (int op = 0; op < OP_COUNT; op++) {
        if (!live[op] && !removed[op]) continue;
        printf("  %-20s %4d", otl_op_name(op), live[op]);
        static const char *const why[OP_COUNT] = {[OP_BATCHNORM] = "folded into Conv",
                                                  [OP_RELU] = "fused into Conv/Add",
                                                  [OP_ADD] = "fused into Conv as residual",
                                                  [OP_ERF] = "fused into Gelu"};
        if (removed[op]) printf("  (+%d %s)", removed[op], why[op] ? why[op] : "removed");
        printf("\n");
    }
}

static const char *human_bytes(double b, char *buf, size_t n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (b >= 1024 && u < 3) b /= 1024, u++;
    snprintf(buf, n, "%.1f %s", b, units[u]);
    return buf;
}

static void print_outputs(const otl_graph *g, const otl_plan *p) {
    char buf[32];
    printf("outputs (at batch 1):\n");
    for (int i = 0; i < g->n_outputs; i++) {
        const otl_tinfo *t = &p->t[g->outputs[i]];
        printf("  %-24s %-8s ", g->values[g->outputs[i]].name, otl_dtype_name(t->dtype));
        print_dims(t->dims, t->rank);
        printf("\n");
    }
    printf("peak activation memory (batch 1): %s\n", human_bytes((double)p->arena_bytes, buf, sizeof buf));
}

/* The head input found, its shape at batch 1, and how it was found. */
static onnxtl_status *print_head(const onnxtl_model *m) {
    const otl_graph *g = otl_model_graph(m);
    char why[512];
    int head = otl_graph_head_input(g, why, sizeof why);
    if (head < 0) {
        printf("head input: none found (%s); use --cut\n", why);
        return NULL;
    }
    otl_tinfo t;
    OTL_TRY(otl_model_shape(m, NULL, 1, head, &t));
    printf("head input (cached by extract): '%s' ", g->values[head].name);
    print_dims(t.dims, t.rank);
    printf(", %lld features per image\n  found as %s\n", (long long)(otl_tinfo_count(&t) / t.dims[0]), why);
    return NULL;
}

/* Nodes and values onnxtl cannot run or hold: fine as long as no plan needs them. */
static void print_unsupported(const otl_graph *g) {
    int shown = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != OP_UNSUPPORTED) continue;
        if (!shown++) printf("not needed for the feature tensor (onnxtl does not run them):\n");
        printf("  node '%s': %s\n", g->nodes[i].name, g->nodes[i].unsupported);
    }
}

/* Plans batch 1 for the outputs' shapes and the activation peak; a model
 * whose outputs need what onnxtl lacks (a label-lookup tail) still has a
 * head input, found and planned on its own. */
static onnxtl_status *print_plan_facts(const onnxtl_model *m) {
    const otl_graph *g = otl_model_graph(m);
    otl_plan *p;
    onnxtl_status *st = otl_model_plan(m, NULL, 1, g->outputs, g->n_outputs, &p);
    char why[512];
    /* Nothing onnxtl can compute, neither the outputs nor a head input: the model is refused. */
    if (st && (onnxtl_status_code(st) != ONNXTL_ERR_UNSUPPORTED || otl_graph_head_input(g, why, sizeof why) < 0))
        return st;
    if (st) {
        printf("outputs: not computed by onnxtl (%s)\n", onnxtl_status_message(st));
        onnxtl_status_release(st);
    } else {
        print_outputs(g, p);
        otl_plan_free(p);
    }
    OTL_TRY(print_head(m));
    print_unsupported(g);
    return NULL;
}

static void print_fallback(void *ctx, const otl_node *n, const char *why) {
    int *count = ctx;
    if (!(*count)++) printf("nodes that fall back to the CPU:\n");
    printf("  %-32s %-18s %s\n", n->name, otl_op_name(n->op), why);
}

static onnxtl_status *print_placement(const onnxtl_model *m, const char *device) {
    onnxtl_options opts = {.device = device};
    int fallbacks = 0, steps = 0;
    OTL_TRY(otl_model_fallbacks(m, &opts, print_fallback, &fallbacks, &steps));
    printf("on %s: %d of %d nodes run there, %d on the CPU\n", device, steps - fallbacks, steps, fallbacks);
    return NULL;
}

int cmd_info(int argc, char **argv) {
    if (cli_help_asked(argc, argv, info_help)) return 0;
    const char *device = NULL;
    if (argc == 4 && !strcmp(argv[2], "--device")) device = argv[3];
    else if (argc != 2) return cli_usage("info", "expected one MODEL argument and at most --device D");
    onnxtl_model *m;
    onnxtl_status *st = onnxtl_model_load(argv[1], &m);
    if (st) return cli_fail(st);
    const otl_graph *g = otl_model_graph(m);
    printf("model: %s\n", g->path);
    printf("ir_version: %lld  opset: %d  producer: %s %s\n", (long long)g->ir_version, g->opset,
           g->producer_name, g->producer_version);
    printf("inputs:\n");
    for (int i = 0; i < g->n_inputs; i++) print_value(&g->values[g->inputs[i]]);
    print_census(g);
    int64_t params;
    size_t bytes;
    char buf[32];
    otl_graph_param_stats(g, &params, &bytes);
    printf("parameters: %lld (%s)\n", (long long)params, human_bytes((double)bytes, buf, sizeof buf));
    st = print_plan_facts(m);
    if (!st && device) st = print_placement(m, device);
    onnxtl_model_release(m);
    return st ? cli_fail(st) : 0;
}
