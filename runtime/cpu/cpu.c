/* The CPU backend: an activation arena per plan and one switch over the ops. */
#include "cpu.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

onnxtl_status *otl_cpu_run_node(const otl_kernel_args *a) {
    switch (a->n->op) {
    case OP_CONV: return otl_cpu_conv(a);
    case OP_MAXPOOL: case OP_AVGPOOL: return otl_cpu_pool(a);
    case OP_GLOBALAVGPOOL: case OP_GLOBALMAXPOOL: return otl_cpu_global_pool(a);
    case OP_BATCHNORM: return otl_cpu_batchnorm(a);
    case OP_RELU: case OP_SIGMOID: case OP_CLIP: return otl_cpu_unary(a);
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_SUM: return otl_cpu_binary(a);
    case OP_CAST: return otl_cpu_cast(a);
    case OP_GEMM: return otl_cpu_gemm(a);
    case OP_MATMUL: return otl_cpu_matmul(a);
    case OP_SOFTMAX: case OP_LOGSOFTMAX: return otl_cpu_softmax(a);
    case OP_REDUCEMEAN: return otl_cpu_reducemean(a);
    case OP_FLATTEN: case OP_RESHAPE: case OP_SQUEEZE: case OP_UNSQUEEZE: case OP_IDENTITY:
    case OP_DROPOUT: return otl_cpu_copy(a);
    case OP_SHAPE: return otl_cpu_shape(a);
    case OP_GATHER: return otl_cpu_gather(a);
    case OP_CONCAT: return otl_cpu_concat(a);
    case OP_TRANSPOSE: return otl_cpu_transpose(a);
    case OP_PAD: return otl_cpu_pad(a);
    case OP_CONSTANT: case OP_COUNT: break;
    }
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "the CPU backend has no kernel for %s",
                     otl_op_name(a->n->op));
}

/* Node inputs/outputs are few; these bound the pointer arrays on the stack. */
#define MAX_NODE_IO 64

static onnxtl_status *too_many_io(const otl_node *n) {
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "node '%s' has more than %d inputs or outputs",
                     n->name, MAX_NODE_IO);
}

onnxtl_status *otl_cpu_eval(void *ctx, const otl_node *n, const otl_tinfo *t, void *const *out) {
    (void)ctx;
    if (n->n_in > MAX_NODE_IO || n->n_out > MAX_NODE_IO) return too_many_io(n);
    const void *in[MAX_NODE_IO];
    for (int k = 0; k < n->n_in; k++) in[k] = n->in[k] >= 0 ? t[n->in[k]].data : NULL;
    size_t ws = otl_cpu_workspace_floats(n, t);
    float *workspace = ws ? malloc(ws * sizeof(float)) : NULL;
    if (ws && !workspace) return otl_nomem();
    otl_kernel_args a = {n, t, in, out, workspace};
    onnxtl_status *st = otl_cpu_run_node(&a);
    free(workspace);
    return st;
}

typedef struct {
    const otl_plan *plan;
    void *arena;
    float *workspace;
    void **ptr; /* per value */
    int threads;
} cpu_state;

static void cpu_release(void *state) {
    cpu_state *s = state;
    if (!s) return;
    free(s->arena);
    free(s->workspace);
    free(s->ptr);
    free(s);
}

static onnxtl_status *cpu_prepare(const otl_plan *plan, const otl_backend_config *cfg, void **state) {
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return otl_nomem();
    s->plan = plan;
    s->threads = cfg && cfg->threads > 0 ? cfg->threads : omp_get_num_procs();
    size_t ws = 0;
    for (int i = 0; i < plan->n_steps; i++) {
        size_t w = otl_cpu_workspace_floats(&plan->g->nodes[plan->steps[i]], plan->t);
        if (w > ws) ws = w;
    }
    s->arena = plan->arena_bytes ? aligned_alloc(64, plan->arena_bytes) : NULL;
    s->workspace = ws ? aligned_alloc(64, ((ws * sizeof(float)) + 63) & ~(size_t)63) : NULL;
    s->ptr = calloc((size_t)plan->g->n_values + 1, sizeof *s->ptr);
    if ((plan->arena_bytes && !s->arena) || (ws && !s->workspace) || !s->ptr) {
        cpu_release(s);
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes of activations and %zu of "
                                           "workspace; try a smaller batch",
                         plan->arena_bytes, ws * sizeof(float));
    }
    for (int v = 0; v < plan->g->n_values; v++) {
        if (plan->t[v].data) s->ptr[v] = (void *)plan->t[v].data;
        else if (plan->offset[v] >= 0) s->ptr[v] = (char *)s->arena + plan->offset[v];
    }
    *state = s;
    return NULL;
}

static onnxtl_status *run_step(cpu_state *s, const otl_node *n) {
    if (n->n_in > MAX_NODE_IO || n->n_out > MAX_NODE_IO) return too_many_io(n);
    const void *in[MAX_NODE_IO];
    void *out[MAX_NODE_IO];
    for (int k = 0; k < n->n_in; k++) in[k] = n->in[k] >= 0 ? s->ptr[n->in[k]] : NULL;
    for (int k = 0; k < n->n_out; k++) out[k] = n->out[k] >= 0 ? s->ptr[n->out[k]] : NULL;
    otl_kernel_args a = {n, s->plan->t, in, out, s->workspace};
    onnxtl_status *st = otl_cpu_run_node(&a);
    return st ? otl_error_wrap(st, "node '%s' (%s)", n->name, otl_op_name(n->op)) : NULL;
}

static onnxtl_status *cpu_run(void *state, const void *const *inputs, void *const *outputs) {
    cpu_state *s = state;
    const otl_plan *p = s->plan;
    omp_set_num_threads(s->threads);
    for (int i = 0; i < p->g->n_inputs; i++) s->ptr[p->g->inputs[i]] = (void *)inputs[i];
    for (int i = 0; i < p->n_steps; i++) OTL_TRY(run_step(s, &p->g->nodes[p->steps[i]]));
    for (int i = 0; i < p->n_outputs; i++) {
        int v = p->outputs[i];
        size_t bytes = otl_tinfo_bytes(&p->t[v]);
        if (bytes) memcpy(outputs[i], s->ptr[v], bytes);
    }
    return NULL;
}

const otl_backend otl_backend_cpu = {"cpu", cpu_prepare, cpu_run, cpu_release};
