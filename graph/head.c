/* Finding a classifier's head: walking back from the graph's output over
 * the layers a classifier ends with, to the tensor a new head should read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define MAX_HEAD_LAYERS 16

/* Gemm, or MatMul with a constant 2-D weight: a Linear layer. */
static bool is_linear(const otl_graph *g, const otl_node *n) {
    if (n->op != OP_GEMM && n->op != OP_MATMUL) return false;
    const otl_value *w = &g->values[n->in[1]];
    return w->data && w->rank == 2;
}

/* A 1x1 Conv with constant weights and nothing fused in: SqueezeNet's classifier. */
static bool is_pointwise_conv(const otl_graph *g, const otl_node *n) {
    if (n->op != OP_CONV || n->attrs.fused_add || n->attrs.group != 1) return false;
    const otl_value *w = &g->values[n->in[1]];
    for (int d = 2; w->data && d < w->rank; d++)
        if (w->dims[d] != 1) return false;
    return w->data != NULL;
}

static bool is_pool(otl_op op) { return op == OP_GLOBALAVGPOOL || op == OP_GLOBALMAXPOOL || op == OP_REDUCEMEAN; }

/* Ops a classifier's end passes its activations through unchanged in kind. */
static bool passes_through(const otl_graph *g, const otl_node *n) {
    switch (n->op) {
    case OP_DROPOUT: case OP_IDENTITY: case OP_SOFTMAX: case OP_LOGSOFTMAX: case OP_FLATTEN: case OP_RESHAPE:
    case OP_SQUEEZE: case OP_RELU: case OP_LEAKYRELU: case OP_SIGMOID: case OP_HARDSWISH: case OP_HARDSIGMOID:
    case OP_GELU: case OP_TANH: case OP_ELU: case OP_SELU: case OP_CELU: case OP_CLIP:
    case OP_UNSUPPORTED: /* a post-processing tail: ZipMap, label lookup */
        return true;
    case OP_ADD: /* a bias after MatMul */
        return n->n_in == 2 && (g->values[n->in[0]].data || g->values[n->in[1]].data);
    default: return is_pool(n->op);
    }
}

/* The one computed input of n among its first two (an unsupported node's may be omitted: -1). */
static int activation_input(const otl_graph *g, const otl_node *n) {
    if (n->n_in < 1) return -1;
    const bool first_constant = n->in[0] < 0 || g->values[n->in[0]].data;
    return n->n_in > 1 && first_constant ? n->in[1] : n->in[0];
}

/* The head input reached from output v, or -1. */
static int head_from(const otl_graph *g, int v, char *why, size_t why_n) {
    int layers[MAX_HEAD_LAYERS], k = 0;
    bool pooled = false;
    while (v >= 0 && k < MAX_HEAD_LAYERS) {
        int p = g->values[v].producer;
        if (p < 0) break;
        const otl_node *n = &g->nodes[p];
        if (!pooled && is_linear(g, n)) {
            layers[k++] = p;
        } else if (pooled && !k && is_pointwise_conv(g, n)) {
            snprintf(why, why_n, "the input of the 1x1 Conv '%s' that the final pooling reads", n->name);
            return n->in[0];
        } else if (!passes_through(g, n)) {
            break;
        }
        pooled |= is_pool(n->op);
        v = activation_input(g, n);
    }
    if (!k) return -1;
    /* Three Linear layers are a VGG/AlexNet-style classifier, replaced whole;
     * otherwise the last one is, as torchvision's transfer-learning recipes do. */
    const otl_node *chosen = &g->nodes[layers[k == 3 ? 2 : 0]];
    if (k == 1) snprintf(why, why_n, "the input of the Linear layer ending the graph (%s '%s')", otl_op_name(chosen->op), chosen->name);
    else snprintf(why, why_n, "the input of the %s of the %d Linear layers ending the graph (%s '%s')",
                  k == 3 ? "first" : "last", k, otl_op_name(chosen->op), chosen->name);
    return chosen->in[0];
}

int otl_graph_head_input(const otl_graph *g, char *why, size_t why_n) {
    for (int i = 0; i < g->n_outputs; i++) { /* the first output that a classifier's head computes */
        int v = head_from(g, g->outputs[i], why, why_n);
        if (v >= 0) return v;
    }
    snprintf(why, why_n, "no Gemm/MatMul with constant weights, or 1x1 Conv before a final pooling, ends the graph");
    return -1;
}

int otl_graph_head_layers(const otl_graph *g, int cut, int64_t (*layers)[2], int max) {
    int k = 0;
    const int first = cut >= 0 && g->values[cut].producer >= 0 ? g->values[cut].producer + 1 : 0;
    for (int i = first; i < g->n_nodes; i++) {
        const otl_node *nd = &g->nodes[i];
        if (nd->removed || (nd->op != OP_GEMM && nd->op != OP_MATMUL)) continue;
        const otl_value *w = &g->values[nd->in[1]];
        if (!w->data || w->rank != 2) continue;
        const bool t = nd->op == OP_GEMM && nd->attrs.trans_b;
        if (k < max) layers[k][0] = w->dims[t ? 1 : 0], layers[k][1] = w->dims[t ? 0 : 1];
        k++;
    }
    return k;
}

void otl_graph_head_shape(const otl_graph *g, int cut, char *buf, size_t n) {
    int64_t (*layers)[2] = malloc(sizeof *layers * ((size_t)g->n_nodes + 1));
    const int k = layers ? otl_graph_head_layers(g, cut, layers, g->n_nodes) : 0;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < k; i++) {
        const int w = snprintf(buf + used, n - used, "%s%lldx%lld", used ? "," : "", (long long)layers[i][0],
                               (long long)layers[i][1]);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
    free(layers);
}
