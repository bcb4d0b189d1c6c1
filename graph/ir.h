/* The in-memory model: values (tensors) and nodes in topological order. */
#ifndef OTL_IR_H
#define OTL_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model_files.h"
#include "status.h"

#define OTL_MAX_SPATIAL 3
#define OTL_MAX_SPLIT 64  /* outputs of one Split */
#define OTL_MAX_FLOATS 16 /* values of a float-list attribute (ImageScaler's bias) */

typedef enum {
#define OTL_OP(id, domain, name, shape) OP_##id,
#define OTL_VERSION(...)
#include "ops.def"
#undef OTL_OP
#undef OTL_VERSION
    OP_UNSUPPORTED, /* a node onnxtl cannot run; it is an error only where a plan needs it */
    OP_COUNT
} otl_op;

const char *otl_op_name(otl_op op);

enum { AUTO_PAD_NOTSET, AUTO_PAD_SAME_UPPER, AUTO_PAD_SAME_LOWER, AUTO_PAD_VALID };
enum { FUSED_NONE, FUSED_SWISH, FUSED_HARDSWISH, FUSED_CLIP, FUSED_GELU, FUSED_GELU_TANH };

/* Parsed attributes of a node, holding the defaults of its op's version
 * (ops.def) where the node gives none.  One flat struct: each op reads the
 * fields its registry entry fills, and ONNX ints are int64_t throughout. */
typedef struct {
    /* Conv and pooling; n_kernel is 0 when kernel_shape is absent (Conv takes it from W). */
    int n_kernel, n_strides, n_dilations, n_pads;
    int64_t kernel[OTL_MAX_SPATIAL], strides[OTL_MAX_SPATIAL], dilations[OTL_MAX_SPATIAL];
    int64_t pads[2 * OTL_MAX_SPATIAL];
    int auto_pad;
    int64_t group;
    /* ConvTranspose: extra cells at the end of each axis, or the output's spatial dims. */
    int n_output_padding, n_output_shape;
    int64_t output_padding[OTL_MAX_SPATIAL], output_shape[OTL_MAX_SPATIAL];
    int64_t ceil_mode, count_include_pad, lp; /* lp: LpPool's p */
    int64_t storage_order; /* MaxPool's Indices: 0 row-major, 1 column-major within a plane */
    /* Axis-based ops. */
    int64_t axis;
    int64_t broadcast; /* binary ops before opset 7: broadcast B onto A (from axis, where has_axis) */
    bool has_axis;
    int n_axes; /* -1: attribute absent */
    int64_t axes[ONNXTL_MAX_RANK];
    int n_perm; /* -1: absent (Transpose reverses) */
    int64_t perm[ONNXTL_MAX_RANK];
    int64_t keepdims, noop_with_empty_axes;
    /* Gemm, BatchNormalization, the activations, LRN, Clip (opset < 11), Pad (opset < 11). */
    float alpha, beta, gamma, epsilon, bias, momentum, ratio;
    int64_t lrn_size;
    int gelu_tanh; /* Gelu's approximate: 0 none, 1 tanh */
    int64_t fmod;  /* Mod: C's fmod (1) or the sign of the divisor (0) */
    /* Slice before opset 10. */
    int n_starts, n_ends;
    int64_t starts[ONNXTL_MAX_RANK], ends[ONNXTL_MAX_RANK];
    int reduction;     /* ScatterND: none, add, mul, max, min */
    int n_split;       /* Split's sizes before opset 13 (-1: absent) */
    int64_t split[OTL_MAX_SPLIT];
    int64_t num_outputs, select_last, blocksize, batch_dims;
    int crd; /* DepthToSpace: 0 DCR, 1 CRD */
    /* Resize and Upsample, as the enums in ops.def list them. */
    int resize_mode, coord_mode, nearest_mode, keep_aspect;
    float cubic_a, extrapolation;
    int64_t exclude_outside;
    int n_floats;
    float floats[OTL_MAX_FLOATS];
    char equation[96]; /* Einsum, without spaces */
    /* ConstantOfShape's value: one element of type dtype (0: float 0). */
    struct {
        int dtype;
        unsigned char bytes[8];
    } fill;
    int64_t trans_a, trans_b;
    float clip_min, clip_max;
    int n_pad_amounts; /* Pad < 11: pads attribute */
    int64_t pad_amounts[2 * ONNXTL_MAX_RANK];
    float pad_value;
    int pad_mode; /* 0 constant, 1 reflect, 2 edge, 3 wrap */
    /* Cast, Reshape, Shape, Dropout. */
    int64_t to;
    int64_t saturate; /* Cast-19: float8 overflow saturates (before opset 19 there is no float8) */
    int round_mode;   /* Cast-24: float8e8m0 rounding, as otl_round_mode */
    int64_t allowzero;
    int64_t shape_start, shape_end;
    bool has_shape_end;
    int64_t training_mode;
    /* Set by otl_pass_fuse_relu: the op applies Relu to its output. */
    int fused_relu;
    /* Set by otl_pass_fuse_activation: another activation a Conv applies
     * to its output, with alpha (Swish) or clip_min/clip_max (Clip), or the
     * Gelu of a Linear layer (a MatMul with a fused bias, below). */
    int fused_act;
    /* Set by otl_pass_fuse_residual: a Conv adds input 3 (a tensor of its
     * output's shape) to its result before any fused Relu; residual_add is
     * the node index of the Add it took in, which a plan runs again where the
     * shapes differ. */
    int fused_add, residual_add;
} otl_attrs;

typedef struct {
    char *name;
    int dtype;  /* 0 while unknown */
    int rank;   /* -1 while unknown */
    int64_t dims[ONNXTL_MAX_RANK]; /* -1 for a symbolic dimension */
    void *data; /* contents of a constant (initializer or Constant node), else NULL */
    bool data_owned; /* data was allocated on its own, not in the weight block or a mapped file */
    bool initializer; /* the file holds it as an initializer (not a Constant node's output) */
    int producer;    /* index of the producing node, -1 for inputs and constants */
    char *unusable;  /* why onnxtl cannot hold it (a string tensor, a map), NULL if it can */
} otl_value;

typedef struct {
    otl_op op;
    char *name;
    int opset; /* default-domain opset the model imports */
    int n_in, n_out;
    int *in;  /* value indices; -1 for an omitted optional input */
    int *out;
    otl_attrs attrs;
    bool removed;      /* dropped by a graph pass */
    char *unsupported; /* for OP_UNSUPPORTED: what onnxtl lacks to run it */
} otl_node;

typedef struct {
    char *path;        /* model file, for messages */
    int64_t ir_version;
    int opset;         /* default-domain opset */
    char *producer_name, *producer_version;
    char **meta_keys, **meta_values; /* metadata_props */
    int n_meta;

    otl_value *values;
    int n_values, cap_values;
    otl_node *nodes;
    int n_nodes;
    int *inputs;  /* graph inputs that are not initializers */
    int n_inputs;
    int *outputs;
    int n_outputs;

    otl_model_files files; /* mapped for the graph's lifetime; weights are used in them where they can be */
    void *weights;         /* one allocation for the initializers that are not */
    size_t weights_bytes;

    struct otl_name_map *names;
} otl_graph;

/* Loads and validates a model, then runs the graph passes (passes.c).  One
 * held in memory (name is for messages) may not use external data. */
onnxtl_status *otl_graph_load(const char *path, otl_graph **out);
onnxtl_status *otl_graph_load_memory(const void *data, size_t size, const char *name, otl_graph **out);
/* The graph as its producer wrote it, without the folding and fusion passes
 * (Identity nodes only are removed, Dropout ones kept): training needs every
 * parameter where the model has it, a BatchNorm's scale or a Relu of its
 * own, and the Dropout nodes that drop while it trains. */
onnxtl_status *otl_graph_load_as_written(const char *path, otl_graph **out);
void otl_graph_free(otl_graph *g);

/* Value lookup and creation; names are unique within a graph. */
int otl_graph_find(const otl_graph *g, const char *name);
onnxtl_status *otl_graph_add_value(otl_graph *g, const char *name, int *index);

/* Graph passes run by otl_graph_load. */
/* Removes Identity nodes, and with dropout too the Dropout nodes that are
 * the identity at inference. */
onnxtl_status *otl_pass_remove_identity(otl_graph *g, bool dropout);
onnxtl_status *otl_pass_fold_batchnorm(otl_graph *g);
/* MatMul(x, W) + b, W a constant matrix and b a constant row, becomes
 * MatMul(x, W, b): a MatMul's third input is the row its product adds. */
onnxtl_status *otl_pass_fuse_linear_bias(otl_graph *g);
onnxtl_status *otl_pass_fuse_relu(otl_graph *g);
onnxtl_status *otl_pass_fuse_residual(otl_graph *g);
onnxtl_status *otl_pass_fuse_gelu(otl_graph *g);
onnxtl_status *otl_pass_fuse_swish(otl_graph *g);
onnxtl_status *otl_pass_fuse_activation(otl_graph *g);

/* The value that feeds the classifier head (head.c): walking back from the
 * output over the Linear layers, activations, Dropout, flattening and final
 * pooling a classifier ends with, the input of its only or last Linear layer
 * (the first of three: VGG's and AlexNet's MLP), or of a 1x1 Conv that the
 * final pooling reads (SqueezeNet).  -1 if there is none; why says which. */
int otl_graph_head_input(const otl_graph *g, char *why, size_t why_n);

/* The Gemm/MatMul layers with constant 2-D weights after the value cut:
 * their number, and the first max of their (in, out) sizes in layers. */
int otl_graph_head_layers(const otl_graph *g, int cut, int64_t (*layers)[2], int max);
/* The shapes (in x out) of those layers, e.g.
 * "2048x1000" or "25088x4096,4096x4096,4096x1000"; empty if none. */
void otl_graph_head_shape(const otl_graph *g, int cut, char *buf, size_t n);

/* A metadata_props value, or NULL. */
const char *otl_graph_meta(const otl_graph *g, const char *key);

/* Parameter count and bytes over all constants. */
void otl_graph_param_stats(const otl_graph *g, int64_t *count, size_t *bytes);

#endif
