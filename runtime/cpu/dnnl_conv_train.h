/* A 2-D Conv the trainer runs on oneDNN's training primitives: forward,
 * backward data and backward weights, each in the layouts oneDNN picks for
 * this CPU (blocked ones, where its fastest kernels are: on plain NCHW it
 * falls back to im2col + GEMM, as conv.c does), with the tape's ONNX-order
 * buffers reordered into them and back.  The weights are reordered on every
 * pass, since the trainer moves them between steps. */
#ifndef OTL_DNNL_CONV_TRAIN_H
#define OTL_DNNL_CONV_TRAIN_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_train_conv otl_train_conv;

/* Whether node n (with shapes t) runs on the primitives: a 2-D fp32 Conv
 * with nothing fused into it. */
bool otl_train_conv_supported(const otl_node *n, const otl_tinfo *t);
onnxtl_status *otl_train_conv_create(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, otl_train_conv **out);
/* The scratch a pass needs for the operands it reorders (a->workspace's, 64-byte aligned). */
size_t otl_train_conv_scratch_bytes(const otl_train_conv *c);
/* Y = conv(X, W) + B, as the forward kernel computes it. */
onnxtl_status *otl_train_conv_forward(otl_train_conv *c, dnnl_stream_t st, const otl_kernel_args *a);
/* dX, dW and dB added into a->din, as otl_cpu_conv_backward adds them. */
onnxtl_status *otl_train_conv_backward(otl_train_conv *c, dnnl_stream_t st, const otl_grad_args *a);
void otl_train_conv_release(otl_train_conv *c);

#endif
