/* The CPU backend: a kernel table over the ops, an activation arena per
 * plan, and channels-last activations where the kernels allow. */
#include "cpu_kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_conv.h"
#include "dnnl_matmul.h"
#include "dtype.h"

/* How a kernel treats 4-D activations stored channels-last. */
typedef enum {
    LAYOUT_ONNX,       /* ONNX order only: channels-last inputs are converted first */
    LAYOUT_FOLLOW,     /* over input 0 and per-channel constants: channels-last when input 0 is */
    LAYOUT_BROADCAST,  /* broadcasting float arithmetic: channels-last when an input is and every
                        * other one is 4-D (converted) or the same bytes in both layouts */
    LAYOUT_CONCAT,     /* channels-last when any input is; the others are converted to it */
    LAYOUT_CONV,       /* oneDNN's channels-last convolution, where it applies */
    LAYOUT_TRANSPOSE,  /* NCHW <-> NHWC permutations, which channels-last storage makes copies */
} layout_kind;

typedef struct {
    onnxtl_status *(*run)(const otl_kernel_args *a);
    layout_kind layout;
} cpu_kernel;

/* The CPU backend's kernel table: one entry per op it runs. */
static const cpu_kernel kernels[OP_COUNT] = {
    [OP_CONV] = {otl_cpu_conv, LAYOUT_CONV},
    [OP_CONVTRANSPOSE] = {otl_cpu_conv_transpose, LAYOUT_ONNX},
    [OP_CONVINTEGER] = {otl_cpu_conv_integer, LAYOUT_ONNX},
    [OP_MATMULINTEGER] = {otl_cpu_matmul_integer, LAYOUT_ONNX},
    [OP_BATCHNORM] = {otl_cpu_batchnorm, LAYOUT_FOLLOW},
    [OP_LRN] = {otl_cpu_lrn, LAYOUT_ONNX},
    [OP_RELU] = {otl_cpu_relu, LAYOUT_FOLLOW},
    [OP_LEAKYRELU] = {otl_cpu_leakyrelu, LAYOUT_FOLLOW},
    [OP_SIGMOID] = {otl_cpu_sigmoid, LAYOUT_FOLLOW},
    [OP_SWISH] = {otl_cpu_swish, LAYOUT_FOLLOW},
    [OP_CLIP] = {otl_cpu_clip, LAYOUT_FOLLOW},
    [OP_MAXPOOL] = {otl_cpu_pool, LAYOUT_FOLLOW},
    [OP_AVGPOOL] = {otl_cpu_pool, LAYOUT_FOLLOW},
    [OP_LPPOOL] = {otl_cpu_pool, LAYOUT_ONNX},
    [OP_GLOBALAVGPOOL] = {otl_cpu_global_pool, LAYOUT_FOLLOW},
    [OP_GLOBALMAXPOOL] = {otl_cpu_global_pool, LAYOUT_FOLLOW},
    [OP_ADD] = {otl_cpu_binary, LAYOUT_BROADCAST},
    [OP_SUB] = {otl_cpu_binary, LAYOUT_BROADCAST},
    [OP_MUL] = {otl_cpu_binary, LAYOUT_BROADCAST},
    [OP_DIV] = {otl_cpu_binary, LAYOUT_BROADCAST},
    [OP_SUM] = {otl_cpu_binary, LAYOUT_BROADCAST},
    [OP_GEMM] = {otl_cpu_gemm, LAYOUT_ONNX},
    [OP_MATMUL] = {otl_cpu_matmul, LAYOUT_ONNX},
    [OP_SOFTMAX] = {otl_cpu_softmax, LAYOUT_ONNX},
    [OP_LOGSOFTMAX] = {otl_cpu_softmax, LAYOUT_ONNX},
    [OP_REDUCEMEAN] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCESUM] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCEMAX] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCEMIN] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCEPROD] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCEL1] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCEL2] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCELOGSUM] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCELOGSUMEXP] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_REDUCESUMSQUARE] = {otl_cpu_reduce, LAYOUT_ONNX},
    [OP_CASTLIKE] = {otl_cpu_cast, LAYOUT_ONNX},
    [OP_FLATTEN] = {otl_cpu_copy, LAYOUT_ONNX},
    [OP_RESHAPE] = {otl_cpu_copy, LAYOUT_ONNX},
    [OP_SQUEEZE] = {otl_cpu_copy, LAYOUT_ONNX},
    [OP_UNSQUEEZE] = {otl_cpu_copy, LAYOUT_ONNX},
    [OP_IDENTITY] = {otl_cpu_copy, LAYOUT_ONNX},
    [OP_DROPOUT] = {otl_cpu_copy, LAYOUT_ONNX},
    [OP_SHAPE] = {otl_cpu_shape, LAYOUT_ONNX},
    [OP_GATHER] = {otl_cpu_gather, LAYOUT_ONNX},
    [OP_GATHERELEMENTS] = {otl_cpu_gather_elements, LAYOUT_ONNX},
    [OP_GATHERND] = {otl_cpu_gather_nd, LAYOUT_ONNX},
    [OP_CONCAT] = {otl_cpu_concat, LAYOUT_CONCAT},
    [OP_TRANSPOSE] = {otl_cpu_transpose, LAYOUT_TRANSPOSE},
    [OP_PAD] = {otl_cpu_pad, LAYOUT_ONNX},
    [OP_CAST] = {otl_cpu_cast, LAYOUT_ONNX},
    [OP_HARDSIGMOID] = {otl_cpu_hardsigmoid, LAYOUT_FOLLOW},
    [OP_HARDSWISH] = {otl_cpu_hardswish, LAYOUT_FOLLOW},
    [OP_TANH] = {otl_cpu_tanh, LAYOUT_FOLLOW},
    [OP_ERF] = {otl_cpu_erf, LAYOUT_FOLLOW},
    [OP_GELU] = {otl_cpu_gelu, LAYOUT_FOLLOW},
    [OP_EXP] = {otl_cpu_exp, LAYOUT_FOLLOW},
    [OP_LOG] = {otl_cpu_log, LAYOUT_FOLLOW},
    [OP_SQRT] = {otl_cpu_sqrt, LAYOUT_FOLLOW},
    [OP_RECIPROCAL] = {otl_cpu_reciprocal, LAYOUT_FOLLOW},
    [OP_NEG] = {otl_cpu_neg, LAYOUT_FOLLOW},
    [OP_ABS] = {otl_cpu_abs, LAYOUT_FOLLOW},
    [OP_SOFTPLUS] = {otl_cpu_softplus, LAYOUT_FOLLOW},
    [OP_SOFTSIGN] = {otl_cpu_softsign, LAYOUT_FOLLOW},
    [OP_ELU] = {otl_cpu_elu, LAYOUT_FOLLOW},
    [OP_SELU] = {otl_cpu_selu, LAYOUT_FOLLOW},
    [OP_CELU] = {otl_cpu_celu, LAYOUT_FOLLOW},
    [OP_EQUAL] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_LESS] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_LESSOREQUAL] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_GREATER] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_GREATEROREQUAL] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_AND] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_OR] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_XOR] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_NOT] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_WHERE] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_POW] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_MOD] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_MAX] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_MIN] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_MEAN] = {otl_cpu_elementwise, LAYOUT_ONNX},
    [OP_LAYERNORM] = {otl_cpu_layernorm, LAYOUT_ONNX},
    [OP_SLICE] = {otl_cpu_slice, LAYOUT_ONNX},
    [OP_EXPAND] = {otl_cpu_expand, LAYOUT_ONNX},
    [OP_CONSTANTOFSHAPE] = {otl_cpu_constant_of_shape, LAYOUT_ONNX},
    [OP_RANGE] = {otl_cpu_range, LAYOUT_ONNX},
    [OP_SCATTERND] = {otl_cpu_scatternd, LAYOUT_ONNX},
    [OP_EINSUM] = {otl_cpu_einsum, LAYOUT_ONNX},
    [OP_PRELU] = {otl_cpu_binary, LAYOUT_BROADCAST},
    [OP_INSTANCENORM] = {otl_cpu_instancenorm, LAYOUT_ONNX},
    [OP_IMAGESCALER] = {otl_cpu_imagescaler, LAYOUT_ONNX},
    [OP_SPLIT] = {otl_cpu_split, LAYOUT_ONNX},
    [OP_TILE] = {otl_cpu_tile, LAYOUT_ONNX},
    [OP_ARGMAX] = {otl_cpu_argmax, LAYOUT_ONNX},
    [OP_ARGMIN] = {otl_cpu_argmax, LAYOUT_ONNX},
    [OP_DEPTHTOSPACE] = {otl_cpu_depth_to_space, LAYOUT_ONNX},
    [OP_SPACETODEPTH] = {otl_cpu_depth_to_space, LAYOUT_ONNX},
    [OP_RESIZE] = {otl_cpu_resize, LAYOUT_ONNX},
    [OP_UPSAMPLE] = {otl_cpu_resize, LAYOUT_ONNX},
};

static bool cpu_supports(const otl_plan *p, int step) {
    const otl_node *n = otl_plan_step(p, step);
    return n->op < OP_COUNT && kernels[n->op].run;
}

onnxtl_status *otl_cpu_run_kernel(const otl_kernel_args *a) {
    if (a->n->op < OP_COUNT && kernels[a->n->op].run) return kernels[a->n->op].run(a);
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "the CPU backend has no kernel for %s", otl_op_name(a->n->op));
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
    otl_kernel_args a = {n, t, in, out, workspace, false};
    onnxtl_status *st = otl_cpu_run_kernel(&a);
    free(workspace);
    return st;
}

/* One input that must change layout before its step runs. */
typedef struct {
    int k;         /* node input index */
    size_t offset; /* of its converted copy in the conversion scratch */
    bool to_nhwc;
} conversion;

typedef struct {
    bool nhwc;            /* the step runs channels-last */
    otl_dnnl_conv *conv;  /* a Conv on oneDNN's primitive */
    bool fused_dw;        /* conv runs the next step's depthwise Conv too, and writes its output */
    bool absorbed;        /* the step before runs this one */
    otl_dnnl_matmul *matmul; /* a Linear layer on oneDNN's matmul */
    conversion *conv_in;  /* inputs to convert first */
    int n_conv_in;
    size_t conv_bytes;    /* scratch their copies take */
} step_plan;

typedef struct {
    const otl_plan *plan;
    void *arena;
    float *workspace;
    char *conv_scratch; /* converted inputs of the running step; steps run one at a time */
    onnxtl_precision precision; /* fp32, or bf16 or int8 convolutions */
    const otl_ranges *ranges;   /* int8: the calibrated activation ranges, by tensor name */
    bool u8_full_range;         /* int8: u8 inputs may use 0..255 */
    bool *held_low;     /* per value: written by a convolution in the type its convolution readers multiply */
    void **ptr;    /* per value */
    bool *nhwc;    /* per value: stored channels-last */
    step_plan *steps;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
} cpu_state;

/* A 4-D float tensor whose two layouts differ in memory.  Constants are
 * stored in ONNX order; a kernel that reads one channels-last gets a copy. */
static bool layout_matters(const otl_tinfo *t) {
    return t->rank == 4 && t->dtype == ONNXTL_FLOAT && t->dims[2] * t->dims[3] > 1 && t->dims[1] > 1;
}

static bool has_perm(const otl_node *n, int64_t a, int64_t b, int64_t c, int64_t d) {
    const int64_t *p = n->attrs.perm;
    return n->attrs.n_perm == 4 && p[0] == a && p[1] == b && p[2] == c && p[3] == d;
}

/* The inputs that a channels-last step's kernel reads channels-last; it reads
 * every other input, like every input of an NCHW step, in ONNX order.  A
 * channels-last Transpose is a copy: [0,2,3,1] of channels-last data is that
 * data in ONNX order, and [0,3,1,2] of ONNX-order data is the result stored
 * channels-last (ConvNeXt's and Swin's permutes). */
static bool reads_nhwc(const otl_node *n, int k) {
    switch (kernels[n->op].layout) {
    case LAYOUT_TRANSPOSE: return has_perm(n, 0, 2, 3, 1);
    case LAYOUT_BROADCAST: case LAYOUT_CONCAT: return true;
    case LAYOUT_CONV: return k == 0 || k == 3; /* the input and a fused residual */
    default: return k == 0;
    }
}

/* A tensor of rank 4 or less whose bytes, aligned to [N, C, H, W], are the
 * same in both layouts: one channel, or one pixel. */
static bool one_layout_aligned(const otl_tinfo *t) {
    if (t->rank > 4) return false;
    int64_t d[4];
    otl_dims4(t, d);
    return d[1] == 1 || d[2] * d[3] == 1;
}

/* Whether a step can run channels-last, given where its inputs are. */
static bool runs_nhwc(const cpu_state *s, const otl_node *n) {
    const otl_tinfo *t = s->plan->t, *x = &t[n->in[0]];
    switch (kernels[n->op].layout) {
    case LAYOUT_CONV: return otl_dnnl_conv_supported(n, t);
    case LAYOUT_FOLLOW: /* a second output (MaxPool's Indices) is defined in ONNX order */
        return x->rank == 4 && s->nhwc[n->in[0]] && (n->n_out < 2 || n->out[1] < 0);
    case LAYOUT_BROADCAST: {
        bool any = false;
        if (t[n->out[0]].rank != 4 || t[n->out[0]].dtype != ONNXTL_FLOAT) return false;
        for (int k = 0; k < n->n_in; k++) {
            const otl_tinfo *y = &t[n->in[k]];
            any |= s->nhwc[n->in[k]];
            if (y->dtype != ONNXTL_FLOAT || (y->rank != 4 && !one_layout_aligned(y))) return false;
        }
        return any;
    }
    case LAYOUT_CONCAT:
        if (t[n->out[0]].rank != 4) return false;
        for (int k = 0; k < n->n_in; k++)
            if (s->nhwc[n->in[k]]) return true;
        return false;
    case LAYOUT_TRANSPOSE:
        return x->rank == 4 && x->dtype == ONNXTL_FLOAT &&
               ((has_perm(n, 0, 2, 3, 1) && s->nhwc[n->in[0]]) ||
                (has_perm(n, 0, 3, 1, 2) && !s->nhwc[n->in[0]] && layout_matters(&t[n->out[0]])));
    case LAYOUT_ONNX: return false;
    }
    return false;
}

/* Whether a step writes output k channels-last. */
static bool writes_nhwc(const otl_plan *p, const otl_node *n, const step_plan *sp, int k) {
    if (!sp->nhwc || !layout_matters(&p->t[n->out[k]])) return false;
    return kernels[n->op].layout != LAYOUT_TRANSPOSE || has_perm(n, 0, 3, 1, 2);
}

static onnxtl_status *add_conversion(step_plan *sp, int k, const otl_tinfo *t, bool to_nhwc) {
    conversion *c = realloc(sp->conv_in, sizeof *c * (size_t)(sp->n_conv_in + 1));
    if (!c) return otl_nomem();
    sp->conv_in = c;
    sp->conv_in[sp->n_conv_in++] = (conversion){k, sp->conv_bytes, to_nhwc};
    sp->conv_bytes += (otl_tinfo_bytes(t) + 63) & ~(size_t)63;
    return NULL;
}

/* An int8 convolution input: u8 when its calibrated range has no negative
 * values (after a ReLU), s8 otherwise; the scale takes its largest
 * magnitude to the type's largest value (u8's is 127 where only 7 bits are
 * safe, otl_cpu_u8_full_range).  A tensor whose range is all but zero keeps
 * scale 1.  False: the tensor has no range. */
static bool int8_quantisation(const cpu_state *s, int v, dnnl_data_type_t *type, float *scale) {
    const otl_range *r = otl_ranges_find(s->ranges, s->plan->g->values[v].name);
    if (!r) return false;
    const float m = fmaxf(fabsf(r->min), fabsf(r->max));
    const bool u8 = r->min >= 0;
    *type = u8 ? dnnl_u8 : dnnl_s8;
    *scale = m > 1e-30f ? (u8 && s->u8_full_range ? 255.0f : 127.0f) / m : 1.0f;
    return true;
}

static bool has_range(const cpu_state *s, int v) {
    return v >= 0 && otl_ranges_find(s->ranges, s->plan->g->values[v].name);
}

/* Whether n is a convolution bf16 or int8 could multiply. */
static bool eligible_conv(const cpu_state *s, const otl_node *n) {
    const otl_tinfo *t = s->plan->t;
    return n->op == OP_CONV && otl_dnnl_conv_supported(n, t) &&
           !(n->attrs.group > 1 && n->attrs.group == t[n->in[0]].dims[1]);
}

/* Depthwise convolutions read and write as much as they compute: in bf16 or
 * int8 they would only add conversion passes, so they stay fp32, as do int8
 * convolutions whose input the calibration did not see.  Without VNNI
 * (u8_full_range) an int8 product costs VPMADDUBSW and VPMADDWD, at most a
 * third faster than an fp32 FMA, while the Winograd does a quarter of the
 * multiplications: the 3x3 convolutions it runs stay fp32 there (in int8,
 * VGG16 ran at half its fp32 rate on an AVX2 EPYC). */
static bool multiplies_low(const cpu_state *s, const otl_node *n) {
    if (s->precision == ONNXTL_PRECISION_FP32 || !eligible_conv(s, n)) return false;
    if (s->precision == ONNXTL_PRECISION_BF16) return true;
    return has_range(s, n->in[0]) && (s->u8_full_range || !otl_dnnl_conv_winograd_fp32(n, s->plan->t));
}

/* In int8, a fused residual's sum may be int8 too, where the residual has a
 * calibrated range: ResNet's blocks then hand each other int8 tensors, and
 * the fp32 round trip between them (a seventh of ResNet50's int8 time) goes. */
static bool int8_residual(const cpu_state *s, const otl_node *n) {
    return s->precision == ONNXTL_PRECISION_INT8 && n->attrs.fused_add && has_range(s, n->in[3]);
}

/* Whether n reads input k in the type of a low-precision convolution. */
static bool reads_low(const cpu_state *s, const otl_node *n, int k) {
    return multiplies_low(s, n) && (k == 0 || (k == 3 && int8_residual(s, n)));
}

/* An output that only such convolutions read, as their input (or, in int8,
 * as their residual), is written in their type (in its own slot, smaller),
 * so no conversion runs between them.  One that anything else reads stays
 * fp32, as does a bf16 residual's sum. */
static onnxtl_status *plan_low_values(cpu_state *s) {
    const otl_plan *p = s->plan;
    if (s->precision == ONNXTL_PRECISION_FP32) return NULL;
    if (!(s->held_low = calloc((size_t)p->g->n_values + 1, sizeof *s->held_low))) return otl_nomem();
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        if (multiplies_low(s, n) && (!n->attrs.fused_add || int8_residual(s, n)) && n->out[0] >= 0)
            s->held_low[n->out[0]] = true;
    }
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && !reads_low(s, n, k)) s->held_low[n->in[k]] = false;
    }
    for (int i = 0; i < p->n_outputs; i++) s->held_low[p->outputs[i]] = false;
    return NULL;
}

/* The held type of value v for low-precision readers, and its int8 scale. */
static dnnl_data_type_t low_type(const cpu_state *s, int v, float *scale) {
    dnnl_data_type_t type = dnnl_bf16;
    *scale = 1.0f;
    if (s->precision == ONNXTL_PRECISION_INT8 && !int8_quantisation(s, v, &type, scale)) return dnnl_f32;
    return type;
}

static otl_conv_arith conv_arith(const cpu_state *s, const otl_node *n) {
    otl_conv_arith a = OTL_CONV_FP32;
    if (!multiplies_low(s, n)) return a;
    a.multiply = low_type(s, n->in[0], &a.in_scale);
    a.in_held = s->held_low[n->in[0]];
    if (n->out[0] >= 0 && s->held_low[n->out[0]]) a.out = low_type(s, n->out[0], &a.out_scale);
    if (int8_residual(s, n)) {
        a.skip_int8 = low_type(s, n->in[3], &a.skip_scale);
        a.skip = s->held_low[n->in[3]] ? a.skip_int8 : dnnl_f32;
    }
    return a;
}

/* int8 needs the calibration's ranges, one for every convolution input a
 * text line can name (calibrate.c records them all): a missing one means the
 * ranges were made for another model. */
static onnxtl_status *check_calibration(const cpu_state *s) {
    if (s->precision != ONNXTL_PRECISION_INT8) return NULL;
    if (!s->ranges || !s->ranges->n)
        return otl_error(ONNXTL_ERR_ARG, "--precision int8 needs activation scales, which this model does not hold: "
                         "extract --precision int8 calibrates them on your images, and fit-head stores them in "
                         "the model it writes");
    for (int i = 0; i < s->plan->n_steps; i++) {
        const otl_node *n = otl_plan_step(s->plan, i);
        if (!eligible_conv(s, n)) continue;
        const char *name = s->plan->g->values[n->in[0]].name;
        if (otl_ranges_name_ok(name) && !otl_ranges_find(s->ranges, name))
            return otl_error(ONNXTL_ERR_ARG, "the int8 calibration has no range for '%s', the input of convolution "
                             "'%s': it was made for another model", name, n->name);
    }
    return NULL;
}

/* Whether step i's outputs are read by step i + 1 alone, not by a later step nor the caller. */
static bool only_next_reads(const otl_plan *p, int i) {
    const otl_node *n = otl_plan_step(p, i);
    for (int k = 0; k < n->n_out; k++) {
        for (int j = i + 2; j < p->n_steps; j++) {
            const otl_node *r = otl_plan_step(p, j);
            for (int q = 0; q < r->n_in; q++)
                if (r->in[q] == n->out[k]) return false;
        }
        for (int o = 0; o < p->n_outputs; o++)
            if (p->outputs[o] == n->out[k]) return false;
    }
    return true;
}

static bool disjoint(const otl_plan *p, int a, int b) {
    if (p->offset[a] < 0 || p->offset[b] < 0) return true;
    const int64_t a_end = p->offset[a] + (int64_t)otl_tinfo_bytes(&p->t[a]);
    const int64_t b_end = p->offset[b] + (int64_t)otl_tinfo_bytes(&p->t[b]);
    return a_end <= p->offset[b] || b_end <= p->offset[a];
}

/* A 1x1 fp32 Conv whose output only the depthwise Conv after it reads runs
 * that one too (otl_dnnl_dw_fusable).  The pair writes the second's output
 * while the first's input is live, which the arena, planned for the two
 * steps apart, may have given the same bytes: then they run apart. */
static bool fuses_next_dw(const cpu_state *s, int i) {
    const otl_plan *p = s->plan;
    if (i + 1 >= p->n_steps) return false;
    const otl_node *n = otl_plan_step(p, i), *dw = otl_plan_step(p, i + 1);
    return n->op == OP_CONV && dw->op == OP_CONV && n->n_out == 1 && !multiplies_low(s, n) &&
           otl_dnnl_dw_fusable(n, dw, p->t) && only_next_reads(p, i) && disjoint(p, n->in[0], dw->out[0]);
}

static onnxtl_status *create_conv(cpu_state *s, int i) {
    const otl_plan *p = s->plan;
    step_plan *sp = &s->steps[i];
    const otl_node *n = otl_plan_step(p, i);
    if (sp->absorbed) return NULL;
    if (fuses_next_dw(s, i)) {
        OTL_TRY(otl_dnnl_conv_create_fused_dw(s->engine, s->stream, n, otl_plan_step(p, i + 1), p->t, &sp->conv));
        sp->fused_dw = s->steps[i + 1].absorbed = sp->conv != NULL;
        if (sp->conv) return NULL;
    }
    return otl_dnnl_conv_create(s->engine, s->stream, n, p->t, conv_arith(s, n), &sp->conv);
}

/* Decides each step's layout and the conversions at layout boundaries. */
static onnxtl_status *plan_layouts(cpu_state *s) {
    OTL_TRY(check_calibration(s));
    OTL_TRY(plan_low_values(s));
    const otl_plan *p = s->plan;
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        step_plan *sp = &s->steps[i];
        sp->nhwc = runs_nhwc(s, n);
        /* Every input whose stored layout is not the one its kernel reads is
         * converted: a layout is never assumed, only Shape ignores the data. */
        for (int k = 0; k < n->n_in && n->op != OP_SHAPE; k++) {
            int v = n->in[k];
            bool want_nhwc = sp->nhwc && reads_nhwc(n, k);
            if (v < 0 || !layout_matters(&p->t[v]) || s->nhwc[v] == want_nhwc) continue;
            OTL_TRY(add_conversion(sp, k, &p->t[v], want_nhwc));
        }
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0) s->nhwc[n->out[k]] = writes_nhwc(p, n, sp, k);
        if (n->op == OP_CONV && sp->nhwc) OTL_TRY(create_conv(s, i));
        if (otl_dnnl_matmul_supported(n, p->t))
            OTL_TRY(otl_dnnl_matmul_create(s->engine, s->stream, n, p->t, s->precision == ONNXTL_PRECISION_BF16,
                                           &sp->matmul));
    }
    return NULL;
}

static void cpu_release(void *state) {
    cpu_state *s = state;
    if (!s) return;
    for (int i = 0; s->steps && i < s->plan->n_steps; i++) {
        otl_dnnl_conv_release(s->steps[i].conv);
        otl_dnnl_matmul_release(s->steps[i].matmul);
        free(s->steps[i].conv_in);
    }
    if (s->stream) dnnl_stream_destroy(s->stream);
    if (s->engine) dnnl_engine_destroy(s->engine);
    free(s->steps);
    free(s->nhwc);
    free(s->held_low);
    free(s->arena);
    free(s->workspace);
    free(s->conv_scratch);
    free(s->ptr);
    free(s);
}

static onnxtl_status *alloc_state(const otl_plan *plan, cpu_state *s) {
    s->arena = plan->arena_bytes ? aligned_alloc(64, plan->arena_bytes) : NULL;
    s->ptr = calloc((size_t)plan->g->n_values + 1, sizeof *s->ptr);
    s->nhwc = calloc((size_t)plan->g->n_values + 1, sizeof *s->nhwc);
    s->steps = calloc((size_t)plan->n_steps + 1, sizeof *s->steps);
    if ((plan->arena_bytes && !s->arena) || !s->ptr || !s->nhwc || !s->steps)
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes of activations; try a smaller batch",
                         plan->arena_bytes);
    if (dnnl_engine_create(&s->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags) != dnnl_success)
        return otl_error(ONNXTL_ERR_RUNTIME, "cannot create a oneDNN CPU engine");
    for (int v = 0; v < plan->g->n_values; v++) {
        if (plan->t[v].data) s->ptr[v] = (void *)plan->t[v].data;
        else if (plan->offset[v] >= 0) s->ptr[v] = (char *)s->arena + plan->offset[v];
    }
    return NULL;
}

/* im2col scratch, sized for the convolutions that do not run on oneDNN, and
 * the scratch for layout conversions, sized for the step that needs most. */
static onnxtl_status *alloc_workspace(cpu_state *s) {
    const otl_plan *p = s->plan;
    size_t ws = 0, conv = 0;
    for (int i = 0; i < p->n_steps; i++) {
        /* the running step's: a kernel's scratch, or a convolution's or MatMul's converted input */
        const step_plan *sp = &s->steps[i];
        const size_t rounded = sp->conv ? otl_dnnl_conv_scratch_bytes(sp->conv)
                               : sp->matmul ? otl_dnnl_matmul_scratch_bytes(sp->matmul) : 0;
        size_t w = sp->conv || sp->matmul ? (rounded + sizeof(float) - 1) / sizeof(float)
                                          : otl_cpu_workspace_floats(otl_plan_step(p, i), p->t);
        if (w > ws) ws = w;
        if (s->steps[i].conv_bytes > conv) conv = s->steps[i].conv_bytes;
    }
    if (ws && !(s->workspace = aligned_alloc(64, ((ws * sizeof(float)) + 63) & ~(size_t)63)))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes of convolution workspace; try a smaller batch",
                         ws * sizeof(float));
    if (conv && !(s->conv_scratch = aligned_alloc(64, conv)))
        return otl_error(ONNXTL_ERR_NOMEM, "cannot allocate %zu bytes for layout conversions; try a smaller batch",
                         conv);
    return NULL;
}

static onnxtl_status *cpu_prepare(const otl_plan *plan, const otl_backend_config *cfg, void **state) {
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return otl_nomem();
    s->plan = plan;
    s->threads = cfg && cfg->threads > 0 ? cfg->threads : omp_get_num_procs();
    s->precision = cfg ? cfg->precision : ONNXTL_PRECISION_FP32;
    s->ranges = cfg ? cfg->ranges : NULL;
    s->u8_full_range = otl_cpu_u8_full_range();
    omp_set_num_threads(s->threads);
    onnxtl_status *st = alloc_state(plan, s);
    if (!st) st = plan_layouts(s);
    if (!st) st = alloc_workspace(s);
    if (st) {
        cpu_release(s);
        return st;
    }
    *state = s;
    return NULL;
}

static onnxtl_status *run_step(cpu_state *s, int i) {
    const otl_node *n = otl_plan_step(s->plan, i);
    const step_plan *sp = &s->steps[i];
    if (sp->absorbed) return NULL;
    if (n->n_in > MAX_NODE_IO || n->n_out > MAX_NODE_IO) return too_many_io(n);
    const void *in[MAX_NODE_IO];
    void *out[MAX_NODE_IO];
    for (int k = 0; k < n->n_in; k++) in[k] = n->in[k] >= 0 ? s->ptr[n->in[k]] : NULL;
    for (int k = 0; k < n->n_out; k++) out[k] = n->out[k] >= 0 ? s->ptr[n->out[k]] : NULL;
    if (sp->fused_dw) out[0] = s->ptr[otl_plan_step(s->plan, i + 1)->out[0]];
    for (int c = 0; c < sp->n_conv_in; c++) {
        const conversion *cv = &sp->conv_in[c];
        const int64_t *dims = s->plan->t[n->in[cv->k]].dims;
        float *copy = (float *)(s->conv_scratch + cv->offset);
        if (cv->to_nhwc) otl_nchw_to_nhwc(in[cv->k], copy, dims);
        else otl_nhwc_to_nchw(in[cv->k], copy, dims);
        in[cv->k] = copy;
    }
    onnxtl_status *st;
    if (sp->matmul) {
        st = otl_dnnl_matmul_run(sp->matmul, in[0], out[0], s->workspace);
    } else if (sp->conv) {
        st = otl_dnnl_conv_run(sp->conv, in[0], n->attrs.fused_add ? in[3] : NULL, out[0], s->workspace);
    } else {
        otl_kernel_args a = {n, s->plan->t, in, out, s->workspace, sp->nhwc};
        st = otl_cpu_run_kernel(&a);
    }
    return st ? otl_error_wrap(st, "node '%s' (%s)", n->name, otl_op_name(n->op)) : NULL;
}

static onnxtl_status *cpu_run(void *state, const void *const *inputs, void *const *outputs) {
    cpu_state *s = state;
    const otl_plan *p = s->plan;
    omp_set_num_threads(s->threads);
    for (int i = 0; i < p->n_inputs; i++) s->ptr[p->inputs[i]] = (void *)inputs[i];
    for (int i = 0; i < p->n_steps; i++) OTL_TRY(run_step(s, i));
    for (int i = 0; i < p->n_outputs; i++) {
        int v = p->outputs[i];
        if (s->nhwc[v]) otl_nhwc_to_nchw(s->ptr[v], outputs[i], p->t[v].dims);
        else if (otl_tinfo_bytes(&p->t[v])) memcpy(outputs[i], s->ptr[v], otl_tinfo_bytes(&p->t[v]));
    }
    return NULL;
}

const otl_backend otl_backend_cpu = {
    .name = "cpu", .supports = cpu_supports, .prepare = cpu_prepare, .run = cpu_run, .release = cpu_release};
