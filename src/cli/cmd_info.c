/* onnxtl info: what a model is and what onnxtl will do with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "json.h"
#include "dtype.h"
#include "model.h"

static const char info_help[] =
    "usage: onnxtl info MODEL [--device D] [--json]\n"
    "\n"
    "Prints the IR version, opsets, producer, inputs and outputs, an op census\n"
    "(after BatchNorm folding and Identity/Dropout removal), the parameter count,\n"
    "the peak activation memory at batch 1, and the tensor that feeds the\n"
    "classifier head (what 'extract' caches).\n"
    "\n"
    "options:\n"
    "  --device D       also list the nodes that the backend of D (cpu, cuda, cuda:N)\n"
    "                   does not run and that fall back to the CPU (no GPU needed)\n"
    "  --json           the same as one JSON object\n";

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

/* What info reports, gathered once and printed as text or JSON. */
typedef struct {
    int live[OP_COUNT], removed[OP_COUNT];
    int64_t params;
    size_t param_bytes;
    otl_plan *plan;        /* batch 1, for the outputs; NULL when they need what onnxtl lacks */
    char *outputs_why;     /* then: why */
    int head;              /* the head input's value, or -1 */
    char head_why[512];    /* how it was found, or why none was */
    otl_tinfo head_shape;  /* at batch 1 */
} info_facts;

static const char *const removed_why[OP_COUNT] = {
    [OP_BATCHNORM] = "folded into Conv", [OP_RELU] = "fused into Conv/Add",
    [OP_ADD] = "fused into Conv (residual), MatMul (bias) or Gelu", [OP_ERF] = "fused into Gelu",
    [OP_GELU] = "fused into MatMul"};

/* Plans batch 1 for the outputs' shapes and the activation peak; a model
 * whose outputs need what onnxtl lacks (a label-lookup tail) still has a
 * head input, found and planned on its own. */
static onnxtl_status *gather(const onnxtl_model *m, info_facts *f) {
    const otl_graph *g = otl_model_graph(m);
    for (int i = 0; i < g->n_nodes; i++) (g->nodes[i].removed ? f->removed : f->live)[g->nodes[i].op]++;
    otl_graph_param_stats(g, &f->params, &f->param_bytes);
    f->head = otl_graph_head_input(g, f->head_why, sizeof f->head_why);
    onnxtl_status *st = otl_model_plan(m, NULL, 1, g->outputs, g->n_outputs, &f->plan);
    /* Nothing onnxtl can compute, neither the outputs nor a head input: the model is refused. */
    if (st && (onnxtl_status_code(st) != ONNXTL_ERR_UNSUPPORTED || f->head < 0)) return st;
    if (st) {
        f->outputs_why = strdup(onnxtl_status_message(st));
        onnxtl_status_release(st);
        if (!f->outputs_why) return otl_nomem();
    }
    return f->head >= 0 ? otl_model_shape(m, NULL, 1, f->head, &f->head_shape) : NULL;
}

static void facts_free(info_facts *f) {
    if (f->plan) otl_plan_free(f->plan);
    free(f->outputs_why);
}

static const char *human_bytes(double b, char *buf, size_t n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (b >= 1024 && u < 3) b /= 1024, u++;
    snprintf(buf, n, "%.1f %s", b, units[u]);
    return buf;
}

static void print_text(const otl_graph *g, const info_facts *f) {
    char buf[32];
    printf("model: %s\n", g->path);
    printf("ir_version: %lld  opset: %d  producer: %s %s\n", (long long)g->ir_version, g->opset, g->producer_name,
           g->producer_version);
    printf("inputs:\n");
    for (int i = 0; i < g->n_inputs; i++) print_value(&g->values[g->inputs[i]]);
    printf("ops (%d nodes):\n", g->n_nodes);
    for (int op = 0; op < OP_COUNT; op++) {
        if (!f->live[op] && !f->removed[op]) continue;
        printf("  %-20s %4d", otl_op_name(op), f->live[op]);
        if (f->removed[op]) printf("  (+%d %s)", f->removed[op], removed_why[op] ? removed_why[op] : "removed");
        printf("\n");
    }
    printf("parameters: %lld (%s)\n", (long long)f->params, human_bytes((double)f->param_bytes, buf, sizeof buf));
    if (f->plan) {
        printf("outputs (at batch 1):\n");
        for (int i = 0; i < g->n_outputs; i++) {
            const otl_tinfo *t = &f->plan->t[g->outputs[i]];
            printf("  %-24s %-8s ", g->values[g->outputs[i]].name, otl_dtype_name(t->dtype));
            print_dims(t->dims, t->rank);
            printf("\n");
        }
        printf("peak activation memory (batch 1): %s\n", human_bytes((double)f->plan->arena_bytes, buf, sizeof buf));
    } else {
        printf("outputs: not computed by onnxtl (%s)\n", f->outputs_why);
    }
    if (f->head < 0) {
        printf("head input: none found (%s); use --cut\n", f->head_why);
    } else {
        printf("head input (cached by extract): '%s' ", g->values[f->head].name);
        print_dims(f->head_shape.dims, f->head_shape.rank);
        printf(", %lld features per image\n  found as %s\n",
               (long long)(otl_tinfo_count(&f->head_shape) / f->head_shape.dims[0]), f->head_why);
    }
    int shown = 0; /* nodes and values onnxtl cannot run or hold: fine as long as no plan needs them */
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != OP_UNSUPPORTED) continue;
        if (!shown++) printf("not needed for the feature tensor (onnxtl does not run them):\n");
        printf("  node '%s': %s\n", g->nodes[i].name, g->nodes[i].unsupported);
    }
}

static void json_tensor(cli_json *j, const char *name, int dtype, const int64_t *dims, int rank) {
    cli_json_object(j, NULL);
    cli_json_str(j, "name", name);
    cli_json_str(j, "dtype", otl_dtype_name(dtype));
    if (rank >= 0) cli_json_dims(j, "dims", dims, rank);
    else cli_json_str(j, "dims", NULL);
    cli_json_close(j);
}

/* Everything but the closing brace: --device adds its placement. */
static void print_json(cli_json *j, const otl_graph *g, const info_facts *f) {
    cli_json_object(j, NULL);
    cli_json_str(j, "model", g->path);
    cli_json_int(j, "ir_version", (long long)g->ir_version);
    cli_json_int(j, "opset", g->opset);
    cli_json_str(j, "producer", g->producer_name);
    cli_json_str(j, "producer_version", g->producer_version);
    cli_json_array(j, "inputs");
    for (int i = 0; i < g->n_inputs; i++) {
        const otl_value *v = &g->values[g->inputs[i]];
        json_tensor(j, v->name, v->dtype, v->dims, v->rank);
    }
    cli_json_close(j);
    cli_json_object(j, "ops");
    for (int op = 0; op < OP_COUNT; op++)
        if (f->live[op]) cli_json_int(j, otl_op_name(op), f->live[op]);
    cli_json_close(j);
    cli_json_object(j, "ops_removed");
    for (int op = 0; op < OP_COUNT; op++)
        if (f->removed[op]) cli_json_int(j, otl_op_name(op), f->removed[op]);
    cli_json_close(j);
    cli_json_int(j, "parameters", (long long)f->params);
    cli_json_int(j, "parameter_bytes", (long long)f->param_bytes);
    cli_json_array(j, "outputs");
    for (int i = 0; f->plan && i < g->n_outputs; i++) {
        const otl_tinfo *t = &f->plan->t[g->outputs[i]];
        json_tensor(j, g->values[g->outputs[i]].name, t->dtype, t->dims, t->rank);
    }
    cli_json_close(j);
    cli_json_str(j, "outputs_not_computed", f->outputs_why);
    if (f->plan) cli_json_int(j, "activation_bytes", (long long)f->plan->arena_bytes);
    cli_json_object(j, "head_input");
    cli_json_str(j, "name", f->head >= 0 ? g->values[f->head].name : NULL);
    if (f->head >= 0) {
        cli_json_dims(j, "dims", f->head_shape.dims, f->head_shape.rank);
        cli_json_int(j, "features", (long long)(otl_tinfo_count(&f->head_shape) / f->head_shape.dims[0]));
    }
    cli_json_str(j, f->head >= 0 ? "found_as" : "why_none", f->head_why);
    cli_json_close(j);
    cli_json_array(j, "unsupported_nodes");
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != OP_UNSUPPORTED) continue;
        cli_json_object(j, NULL);
        cli_json_str(j, "node", g->nodes[i].name);
        cli_json_str(j, "why", g->nodes[i].unsupported);
        cli_json_close(j);
    }
    cli_json_close(j);
}

typedef struct {
    cli_json *json; /* NULL: text */
    int count;
} fallback_list;

static void list_fallback(void *ctx, const otl_node *n, const char *why) {
    fallback_list *l = ctx;
    if (l->json) {
        cli_json_object(l->json, NULL);
        cli_json_str(l->json, "node", n->name);
        cli_json_str(l->json, "op", otl_op_name(n->op));
        cli_json_str(l->json, "why", why);
        cli_json_close(l->json);
    } else {
        if (!l->count) printf("nodes that fall back to the CPU:\n");
        printf("  %-32s %-18s %s\n", n->name, otl_op_name(n->op), why);
    }
    l->count++;
}

/* How fp32 3x3 convolutions run on this CPU, after "fp32 3x3 convolutions". */
static const char *winograd_text(const char *isa) {
    if (!strcmp(isa, "avx512")) return "in onnxtl's Winograd F(4x4,3x3), AVX-512 (64+ channels, 16+ output tiles)";
    if (!strcmp(isa, "avx2")) return "in onnxtl's Winograd F(4x4,3x3), AVX2 (64+ channels, 16+ output tiles)";
    return "direct (no Winograd without AVX2)";
}

static onnxtl_status *print_placement(const onnxtl_model *m, const char *device, cli_json *j) {
    onnxtl_options opts = {.device = device};
    fallback_list l = {j, 0};
    int steps = 0;
    if (j) cli_json_object(j, "placement"), cli_json_str(j, "device", device), cli_json_array(j, "fallbacks");
    OTL_TRY(otl_model_fallbacks(m, &opts, list_fallback, &l, &steps));
    otl_cpu_facts cpu;
    otl_cpu_facts_get(&cpu);
    const char *ranges = otl_graph_meta(otl_model_graph(m), "onnxtl.int8_ranges");
    const size_t scales = ranges ? cli_line_count(ranges) : 0;
    const bool on_cpu = !strcmp(device, "cpu");
    if (j) {
        cli_json_close(j);
        cli_json_int(j, "nodes", steps);
        cli_json_int(j, "on_device", steps - l.count);
        if (on_cpu) cli_json_str(j, "isa", cpu.isa), cli_json_bool(j, "bf16", cpu.bf16), cli_json_bool(j, "int8_vnni", cpu.int8_vnni),
                    cli_json_str(j, "winograd", cpu.winograd);
        cli_json_int(j, "int8_scales", (long long)scales);
        cli_json_close(j);
    } else {
        printf("on %s: %d of %d nodes run there, %d on the CPU\n", device, steps - l.count, steps, l.count);
        if (on_cpu)
            printf("CPU kernels: oneDNN %s; --precision bf16 %s; --precision int8 available%s; fp32 3x3 "
                   "convolutions %s\n", cpu.isa, cpu.bf16 ? "available" : "not available",
                   cpu.int8_vnni ? "" : !strcmp(cpu.winograd, "none") ? " (no VNNI: u8 inputs in 7 bits)"
                                      : " (no VNNI: u8 inputs in 7 bits; the Winograd's 3x3 convolutions stay fp32)",
                   winograd_text(cpu.winograd));
        if (scales) printf("int8 scales: calibrated ranges of %zu tensors, for --precision int8\n", scales);
    }
    return NULL;
}

int cmd_info(int argc, char **argv) {
    if (cli_help_asked(argc, argv, info_help)) return 0;
    const char *device = NULL, *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (argv[i][0] == '-') return cli_usage("info", "unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return cli_usage("info", "expected one MODEL argument and at most --device D");
    }
    if (!path) return cli_usage("info", "expected one MODEL argument and at most --device D");
    onnxtl_model *m;
    onnxtl_status *st = onnxtl_model_load(path, &m);
    if (st) return cli_fail(st);
    info_facts f = {0};
    char *text = NULL;
    size_t len = 0;
    FILE *buffer = json ? open_memstream(&text, &len) : NULL; /* JSON is printed whole or not at all */
    cli_json j = cli_json_start(buffer);
    st = json && !buffer ? otl_nomem() : gather(m, &f);
    if (!st && json) print_json(&j, otl_model_graph(m), &f);
    else if (!st) print_text(otl_model_graph(m), &f);
    if (!st && device) st = print_placement(m, device, json ? &j : NULL);
    if (!st && json) cli_json_close(&j);
    if (buffer && fclose(buffer) == 0 && !st) fwrite(text, 1, len, stdout);
    free(text);
    facts_free(&f);
    onnxtl_model_release(m);
    return st ? cli_fail(st) : 0;
}
