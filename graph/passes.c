/* Graph rewrites run once after loading; all keep the model's results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static bool is_graph_output(const otl_graph *g, int v) {
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

static int count_uses(const otl_graph *g, int v) {
    int uses = is_graph_output(g, v);
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].removed) continue;
        for (int k = 0; k < g->nodes[i].n_in; k++) uses += g->nodes[i].in[k] == v;
    }
    return uses;
}

static void replace_uses(otl_graph *g, int from, int to) {
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == from) g->nodes[i].in[k] = to;
}

static bool constant_zero_ratio(const otl_graph *g, const otl_node *n) {
    const otl_value *r = n->n_in > 1 && n->in[1] >= 0 ? &g->values[n->in[1]] : NULL;
    return r && r->data && r->dtype == ONNXTL_FLOAT && r->rank == 0 && *(const float *)r->data == 0.0f;
}

/* Dropout is the identity at inference unless training_mode is set (or
 * unknown), and in training mode too with a ratio of 0 (Swin's attention). */
static bool dropout_is_identity(const otl_graph *g, const otl_node *n) {
    if (n->n_out > 1 && n->out[1] >= 0 && count_uses(g, n->out[1])) return false;
    if (n->n_in < 3 || n->in[2] < 0 || constant_zero_ratio(g, n)) return true;
    const otl_value *tm = &g->values[n->in[2]];
    return tm->data && tm->dtype == ONNXTL_BOOL && !*(const uint8_t *)tm->data;
}

onnxtl_status *otl_pass_remove_identity(otl_graph *g, bool dropout) {
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = &g->nodes[i];
        bool identity = n->op == OP_IDENTITY || (dropout && n->op == OP_DROPOUT && dropout_is_identity(g, n));
        if (!identity || is_graph_output(g, n->out[0])) continue;
        replace_uses(g, n->out[0], n->in[0]);
        n->removed = true;
    }
    return NULL;
}

/* next, the op that reads n's output, becomes part of n: n writes next's
 * output in its place. */
static void absorb_next(otl_graph *g, otl_node *n, otl_node *next) {
    g->values[next->out[0]].producer = (int)(n - g->nodes);
    n->out[0] = next->out[0];
    next->removed = true;
}

static bool produced_by(const otl_graph *g, int v, otl_op op) {
    int p = g->values[v].producer;
    return p >= 0 && g->nodes[p].op == op;
}

static const float *float_const(const otl_graph *g, int v, int64_t count) {
    if (v < 0) return NULL;
    const otl_value *x = &g->values[v];
    if (!x->data || x->dtype != ONNXTL_FLOAT || x->rank != 1 || x->dims[0] != count) return NULL;
    return x->data;
}

/* A new constant bias for a Conv that had none. */
static onnxtl_status *add_bias(otl_graph *g, otl_node *conv, int64_t m) {
    char name[512];
    snprintf(name, sizeof name, "%s::folded_bias", g->values[conv->out[0]].name);
    int idx;
    OTL_TRY(otl_graph_add_value(g, name, &idx));
    otl_value *b = &g->values[idx];
    b->dtype = ONNXTL_FLOAT;
    b->rank = 1;
    b->dims[0] = m;
    if (!(b->data = calloc((size_t)m, sizeof(float)))) return otl_nomem();
    b->data_owned = true;
    if (conv->n_in < 3) {
        int *in = realloc(conv->in, 3 * sizeof *in);
        if (!in) return otl_nomem();
        conv->in = in;
        conv->n_in = 3;
    }
    conv->in[2] = idx;
    return NULL;
}

/* A constant a pass rewrites: one used in place in a mapped file may share
 * its bytes with another tensor (external data naming the same range), so it
 * gets a copy of its own first; the weight block holds each tensor apart. */
static onnxtl_status *make_writable(otl_graph *g, otl_value *v, size_t bytes) {
    const char *p = v->data, *block = g->weights;
    if (v->data_owned || (p >= block && p < block + g->weights_bytes)) return NULL;
    void *copy = malloc(bytes ? bytes : 1);
    if (!copy) return otl_nomem();
    memcpy(copy, v->data, bytes);
    v->data = copy;
    v->data_owned = true;
    return NULL;
}

/* W' = W * scale / sqrt(var + eps);  b' = (b - mean) * scale / sqrt(var + eps) + B. */
static onnxtl_status *fold_into_conv(otl_graph *g, otl_node *conv, otl_node *bn) {
    const otl_value *w = &g->values[conv->in[1]];
    int64_t m = w->dims[0], per_out = 1;
    for (int d = 1; d < w->rank; d++) per_out *= w->dims[d];
    const float *scale = float_const(g, bn->in[1], m), *shift = float_const(g, bn->in[2], m);
    const float *mean = float_const(g, bn->in[3], m), *var = float_const(g, bn->in[4], m);
    bool has_bias = conv->n_in > 2 && conv->in[2] >= 0;
    if (!scale || !shift || !mean || !var || (has_bias && !float_const(g, conv->in[2], m)))
        return NULL;
    if (!has_bias) OTL_TRY(add_bias(g, conv, m)); /* may move g->values */
    OTL_TRY(make_writable(g, &g->values[conv->in[2]], (size_t)m * sizeof(float)));
    OTL_TRY(make_writable(g, &g->values[conv->in[1]], (size_t)(m * per_out) * sizeof(float)));
    float *bias = g->values[conv->in[2]].data, *wd = g->values[conv->in[1]].data;
    for (int64_t o = 0; o < m; o++) {
        double k = (double)scale[o] / sqrt((double)var[o] + (double)bn->attrs.epsilon);
        for (int64_t j = 0; j < per_out; j++) wd[o * per_out + j] = (float)(wd[o * per_out + j] * k);
        bias[o] = (float)(((double)bias[o] - mean[o]) * k + shift[o]);
    }
    absorb_next(g, conv, bn);
    return NULL;
}

onnxtl_status *otl_pass_fold_batchnorm(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *bn = &g->nodes[i];
        if (bn->removed || bn->op != OP_BATCHNORM || bn->attrs.training_mode) continue;
        bool extra_outputs = false;
        for (int k = 1; k < bn->n_out; k++) extra_outputs |= bn->out[k] >= 0;
        int x = bn->in[0], p = g->values[x].producer;
        if (extra_outputs || p < 0 || g->nodes[p].op != OP_CONV || count_uses(g, x) != 1) continue;
        otl_node *conv = &g->nodes[p];
        otl_value *w = &g->values[conv->in[1]];
        if (!w->data || w->dtype != ONNXTL_FLOAT || w->rank < 3 || count_uses(g, conv->in[1]) != 1)
            continue;
        if (conv->n_in > 2 && conv->in[2] >= 0 && count_uses(g, conv->in[2]) != 1) continue;
        OTL_TRY(fold_into_conv(g, conv, bn));
    }
    return NULL;
}

/* MatMul(x, W) + b with W a constant matrix and b a constant row of its
 * width: torch exports nn.Linear so over 3-D and 4-D activations (ViT's
 * projections and MLP, ConvNeXt's pointwise layers).  The MatMul takes b
 * as a third input and adds it as it writes the product, where the Add was
 * another pass over the whole output. */
static void fuse_one_linear_bias(otl_graph *g, otl_node *add) {
    for (int k = 0; k < 2; k++) {
        const int y = add->in[k], bias = add->in[1 - k], p = g->values[y].producer;
        if (!produced_by(g, y, OP_MATMUL) || count_uses(g, y) != 1) continue;
        otl_node *mm = &g->nodes[p];
        const otl_value *w = &g->values[mm->in[1]];
        if (mm->n_in != 2 || !w->data || w->dtype != ONNXTL_FLOAT || w->rank != 2 || !float_const(g, bias, w->dims[1]))
            continue;
        int *in = realloc(mm->in, 3 * sizeof *in);
        if (!in) return; /* leaving the graph unfused is always correct */
        mm->in = in;
        mm->in[2] = bias;
        mm->n_in = 3;
        absorb_next(g, mm, add);
        return;
    }
}

onnxtl_status *otl_pass_fuse_linear_bias(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *add = &g->nodes[i];
        /* before opset 7 an Add broadcasts from its axis attribute */
        if (!add->removed && add->op == OP_ADD && add->n_in == 2 && add->opset >= 7) fuse_one_linear_bias(g, add);
    }
    return NULL;
}

/* Conv -> Relu and Add -> Relu become one op with fused_relu set, saving a
 * pass over the activation; the Relu's output takes the producer's place. */
onnxtl_status *otl_pass_fuse_relu(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *relu = &g->nodes[i];
        if (relu->removed || relu->op != OP_RELU) continue;
        int x = relu->in[0], p = g->values[x].producer;
        if (p < 0 || count_uses(g, x) != 1) continue;
        otl_node *prod = &g->nodes[p];
        if ((prod->op != OP_CONV && prod->op != OP_ADD) || prod->attrs.fused_relu || prod->n_out != 1) continue;
        prod->attrs.fused_relu = 1;
        absorb_next(g, prod, relu);
    }
    return NULL;
}

/* Add(Conv(x), skip) becomes Conv(x, W, B, skip) with fused_add: the residual
 * connection of ResNets.  Only between two computed activations (a Conv's and
 * another Conv's, Add's or MaxPool's), which have the same shape in such
 * networks; a plan whose shapes differ runs the Add apart (plan.c).  The skip
 * must be computed before the Conv runs: with two Conv branches (RegNet's
 * projection), the later Conv takes the Add in. */
static void fuse_one_residual(otl_graph *g, otl_node *add) {
    for (int k = 0; k < 2; k++) {
        int conv_out = add->in[k], skip = add->in[1 - k], p = g->values[conv_out].producer;
        if (!produced_by(g, conv_out, OP_CONV) || count_uses(g, conv_out) != 1) continue;
        if (!produced_by(g, skip, OP_CONV) && !produced_by(g, skip, OP_ADD) && !produced_by(g, skip, OP_MAXPOOL)) continue;
        if (g->values[skip].producer > p) continue;
        otl_node *conv = &g->nodes[p];
        if (conv->attrs.fused_relu || conv->attrs.fused_act || conv->attrs.fused_add) continue;
        int *in = realloc(conv->in, 4 * sizeof *in);
        if (!in) return; /* leaving the graph unfused is always correct */
        conv->in = in;
        for (int i = conv->n_in; i < 3; i++) conv->in[i] = -1;
        conv->in[3] = skip;
        conv->n_in = 4;
        conv->attrs.fused_add = 1;
        conv->attrs.residual_add = (int)(add - g->nodes);
        conv->attrs.fused_relu = add->attrs.fused_relu;
        absorb_next(g, conv, add);
        return;
    }
}

onnxtl_status *otl_pass_fuse_residual(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *add = &g->nodes[i];
        if (!add->removed && add->op == OP_ADD && add->n_in == 2) fuse_one_residual(g, add);
    }
    return NULL;
}

/* The node that reads v, where exactly one does. */
static otl_node *only_reader(otl_graph *g, int v) {
    if (count_uses(g, v) != 1) return NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in && !n->removed; k++)
            if (n->in[k] == v) return n;
    }
    return NULL;
}

static bool is_scalar(const otl_graph *g, int v, float want) {
    const otl_value *x = &g->values[v];
    return x->data && x->dtype == ONNXTL_FLOAT && x->rank <= 1 && (x->rank == 0 || x->dims[0] == 1) &&
           fabsf(*(const float *)x->data - want) <= 1e-6f * want;
}

/* The input of n other than v, where n is a binary op with v as one input. */
static int other_input(const otl_node *n, int v) {
    return n->n_in == 2 && (n->in[0] == v || n->in[1] == v) ? n->in[n->in[0] == v] : -1;
}

/* Rewrites n, the last node of a fused pattern, as op of x with default attributes. */
static void become_unary(otl_node *n, otl_op op, int x) {
    n->op = op;
    n->in[0] = x;
    n->n_in = 1;
    memset(&n->attrs, 0, sizeof n->attrs);
    n->attrs.n_axes = n->attrs.n_perm = n->attrs.n_split = -1;
}

/* x * (1 + erf(x / sqrt(2))) * 0.5, as torch exports nn.GELU, becomes one
 * Gelu node: five passes over the activation become one. */
static void fuse_one_gelu(otl_graph *g, otl_node *erf) {
    const int p = g->values[erf->in[0]].producer;
    otl_node *div = p >= 0 ? &g->nodes[p] : NULL;
    if (!div || div->op != OP_DIV || !is_scalar(g, div->in[1], 1.41421356f) || count_uses(g, div->out[0]) != 1) return;
    const int x = div->in[0];
    otl_node *add = only_reader(g, erf->out[0]);
    if (!add || add->op != OP_ADD || add->attrs.fused_relu || !is_scalar(g, other_input(add, erf->out[0]), 1.0f)) return;
    otl_node *mul = only_reader(g, add->out[0]);
    if (!mul || mul->op != OP_MUL || other_input(mul, add->out[0]) != x) return;
    otl_node *half = only_reader(g, mul->out[0]);
    if (!half || half->op != OP_MUL || !is_scalar(g, other_input(half, mul->out[0]), 0.5f)) return;
    become_unary(half, OP_GELU, x);
    div->removed = erf->removed = add->removed = mul->removed = true;
}

onnxtl_status *otl_pass_fuse_gelu(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].removed && g->nodes[i].op == OP_ERF) fuse_one_gelu(g, &g->nodes[i]);
    return NULL;
}

/* x * Sigmoid(x), as torch exports nn.SiLU (EfficientNet's activation),
 * becomes one Swish node: two passes over the activation become one. */
static void fuse_one_swish(otl_graph *g, otl_node *sigmoid) {
    otl_node *mul = only_reader(g, sigmoid->out[0]);
    if (!mul || mul->op != OP_MUL || mul->attrs.fused_relu || other_input(mul, sigmoid->out[0]) != sigmoid->in[0])
        return;
    become_unary(mul, OP_SWISH, sigmoid->in[0]);
    mul->attrs.alpha = 1.0f;
    sigmoid->removed = true;
}

onnxtl_status *otl_pass_fuse_swish(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].removed && g->nodes[i].op == OP_SIGMOID) fuse_one_swish(g, &g->nodes[i]);
    return NULL;
}

/* Clip's bounds where they are known at load time: attributes before opset
 * 11, constant scalar inputs (or none) after. */
static bool constant_clip(const otl_graph *g, const otl_node *clip, float *lo, float *hi) {
    *lo = clip->opset < 11 ? clip->attrs.clip_min : -INFINITY;
    *hi = clip->opset < 11 ? clip->attrs.clip_max : INFINITY;
    for (int k = 1; k < clip->n_in && clip->opset >= 11; k++) {
        if (clip->in[k] < 0) continue;
        const otl_value *b = &g->values[clip->in[k]];
        if (!b->data || b->dtype != ONNXTL_FLOAT || (b->rank == 1 && b->dims[0] != 1) || b->rank > 1) return false;
        *(k == 1 ? lo : hi) = *(const float *)b->data;
    }
    return true;
}

/* Conv followed by Swish (EfficientNet), HardSwish (MobileNetV3) or Clip
 * (MobileNetV2's ReLU6): the Conv applies it as it writes its output, which
 * oneDNN does as a post-op while the tile is in cache. */
static void fuse_one_conv_activation(otl_graph *g, otl_node *conv) {
    otl_node *act = only_reader(g, conv->out[0]);
    float lo, hi;
    if (!act || act->in[0] != conv->out[0]) return;
    if (act->op == OP_SWISH) conv->attrs.fused_act = FUSED_SWISH, conv->attrs.alpha = act->attrs.alpha;
    else if (act->op == OP_HARDSWISH) conv->attrs.fused_act = FUSED_HARDSWISH;
    else if (act->op == OP_CLIP && constant_clip(g, act, &lo, &hi))
        conv->attrs.fused_act = FUSED_CLIP, conv->attrs.clip_min = lo, conv->attrs.clip_max = hi;
    else return;
    absorb_next(g, conv, act);
}

/* A Linear layer followed by Gelu (the MLPs of ViT and ConvNeXt) applies it
 * as it writes its output, as a Conv does its activation. */
static void fuse_one_linear_gelu(otl_graph *g, otl_node *mm) {
    otl_node *gelu = only_reader(g, mm->out[0]);
    if (!gelu || gelu->op != OP_GELU) return;
    mm->attrs.fused_act = gelu->attrs.gelu_tanh ? FUSED_GELU_TANH : FUSED_GELU;
    absorb_next(g, mm, gelu);
}

onnxtl_status *otl_pass_fuse_activation(otl_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = &g->nodes[i];
        if (n->removed || n->n_out != 1 || n->attrs.fused_relu || n->attrs.fused_act) continue;
        if (n->op == OP_CONV) fuse_one_conv_activation(g, n);
        else if (n->op == OP_MATMUL && n->n_in == 3) fuse_one_linear_gelu(g, n);
    }
    return NULL;
}
