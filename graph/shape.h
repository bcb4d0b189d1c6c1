/* Shape and type inference with concrete dimensions. */
#ifndef OTL_SHAPE_H
#define OTL_SHAPE_H

#include "ir.h"

/* What is known of one value once the input shapes are fixed. */
typedef struct {
    int dtype;
    int rank;
    int64_t dims[ONNXTL_MAX_RANK];
    const void *data; /* constant contents, or NULL */
} otl_tinfo;

int64_t otl_tinfo_count(const otl_tinfo *t);

/* Fills t[out] for each output of n from t[in]. Errors say what was expected;
 * the caller adds the node's name. */
onnxtl_status *otl_infer_node(const otl_node *n, otl_tinfo *t);

/* Sliding-window geometry of Conv and pooling, normalised to three spatial
 * dimensions (leading ones for 1-D and 2-D) with pads resolved from auto_pad. */
typedef struct {
    int n; /* the op's own spatial rank */
    int64_t in[3], out[3], kernel[3], stride[3], dilation[3], pad_begin[3], pad_end[3];
} otl_window;

onnxtl_status *otl_window_init(const otl_attrs *a, int n, const int64_t *in, const int64_t *kernel,
                               bool use_ceil, otl_window *w);

/* ConvTranspose's geometry as the Conv it transposes (shape.c says how). */
onnxtl_status *otl_window_transpose(const otl_attrs *a, int n, const int64_t *in, const int64_t *kernel,
                                    otl_window *w);

/* Multidirectional (numpy) broadcast of two shapes. */
onnxtl_status *otl_broadcast_shape(const otl_tinfo *a, const otl_tinfo *b, otl_tinfo *out);

/* Reads a constant 1-D int32/int64 tensor into out (at most max entries). */
onnxtl_status *otl_tinfo_ints(const otl_tinfo *t, const char *what, int64_t *out, int max, int *n);

/* Normalises a possibly negative axis against rank r (r+1 for insertion). */
onnxtl_status *otl_norm_axis(int64_t axis, int r, int64_t *out);



/* [start, end) of the dims that Shape reports (opset 15 start/end). */
void otl_shape_range(const otl_attrs *a, int rank, int64_t *start, int64_t *end);
/* Pad amounts (begins then ends, 2*rank values) from a Pad node's attribute or inputs. */
onnxtl_status *otl_pad_amounts(const otl_node *nd, const otl_tinfo *t, int rank, int64_t *pads);
/* Slice's start and step per axis of input 0, and the output's dims. */
onnxtl_status *otl_slice_plan(const otl_node *nd, const otl_tinfo *t, int64_t *start, int64_t *step, int64_t *dims);
/* An Einsum equation resolved against its inputs: each axis of each input
 * and of the output as the index of its letter, and each letter's extent. */
#define OTL_EINSUM_MAX_IN 8
typedef struct {
    int n_in, n_letters;
    int rank[OTL_EINSUM_MAX_IN], axes[OTL_EINSUM_MAX_IN][ONNXTL_MAX_RANK];
    int out_rank, out[ONNXTL_MAX_RANK];
    int64_t extent[52];
} otl_einsum;

onnxtl_status *otl_einsum_parse(const otl_node *nd, const otl_tinfo *t, otl_einsum *e);
/* Split's axis and the size along it of each output. */
onnxtl_status *otl_split_sizes(const otl_node *nd, const otl_tinfo *t, int64_t *axis, int64_t *sizes);
/* Resize and Upsample, per axis of input 0: the sizes, the scale from input
 * to output coordinates, and tf_crop_and_resize's region (0 to 1 without). */
enum { RESIZE_NEAREST, RESIZE_LINEAR, RESIZE_CUBIC };
enum { COORD_HALF_PIXEL, COORD_HALF_PIXEL_SYMMETRIC, COORD_PYTORCH_HALF_PIXEL, COORD_ALIGN_CORNERS,
       COORD_ASYMMETRIC, COORD_TF_HALF_PIXEL_FOR_NN, COORD_TF_CROP_AND_RESIZE };
enum { NEAREST_ROUND_PREFER_FLOOR, NEAREST_ROUND_PREFER_CEIL, NEAREST_FLOOR, NEAREST_CEIL,
       NEAREST_UPSAMPLE /* before Resize-11: truncate when enlarging, ceil when shrinking */ };
typedef struct {
    int rank, coord_mode, nearest_mode;
    int64_t in[ONNXTL_MAX_RANK], out[ONNXTL_MAX_RANK];
    float scale[ONNXTL_MAX_RANK], roi_start[ONNXTL_MAX_RANK], roi_end[ONNXTL_MAX_RANK];
} otl_resize;
onnxtl_status *otl_resize_plan(const otl_node *nd, const otl_tinfo *t, otl_resize *r);
/* Which axes of input 0 a reduction averages over (attribute or input axes). */
onnxtl_status *otl_reduce_mask(const otl_node *nd, const otl_tinfo *t, bool *mask);
#endif
