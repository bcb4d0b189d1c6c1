/* A 2-D MaxPool or AveragePool the trainer runs on oneDNN's pooling
 * primitives: forward training (which records, for MaxPool, where each
 * window's maximum was) and backward, on the tape's NCHW buffers. */
#ifndef OTL_DNNL_POOL_TRAIN_H
#define OTL_DNNL_POOL_TRAIN_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_train_pool otl_train_pool;

/* Whether node n (with shapes t) runs on the primitives: a 2-D fp32 pool
 * without an Indices output, whose divisor oneDNN computes as ONNX does. */
bool otl_train_pool_supported(const otl_node *n, const otl_tinfo *t);
onnxtl_status *otl_train_pool_create(dnnl_engine_t eng, const otl_node *n, const otl_tinfo *t, otl_train_pool **out);
/* The scratch a pass needs (a->workspace's, 64-byte aligned). */
size_t otl_train_pool_scratch_bytes(const otl_train_pool *p);
onnxtl_status *otl_train_pool_forward(otl_train_pool *p, dnnl_stream_t st, const otl_kernel_args *a);
/* dX added into a->din[0], from the last forward's record. */
onnxtl_status *otl_train_pool_backward(otl_train_pool *p, dnnl_stream_t st, const otl_grad_args *a);
void otl_train_pool_release(otl_train_pool *p);

#endif
