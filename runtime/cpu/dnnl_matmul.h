/* A Linear layer (MatMul by a constant K x N matrix, the batch dimensions of
 * its input one after another, or Gemm by a constant matrix plus a constant
 * row) on oneDNN's matmul primitive, the weights packed once in the layout it
 * chose: at batch 16, 4-12x sgemm's rate, which packs them on every call
 * (gemm.c keeps the products whose operands are both computed).  In bf16 the
 * weights are rounded once and each input as it comes; the sums and the
 * output stay fp32. */
#ifndef OTL_DNNL_MATMUL_H
#define OTL_DNNL_MATMUL_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_dnnl_matmul otl_dnnl_matmul;

bool otl_dnnl_matmul_supported(const otl_node *n, const otl_tinfo *t);
onnxtl_status *otl_dnnl_matmul_create(dnnl_engine_t engine, dnnl_stream_t stream, const otl_node *n,
                                      const otl_tinfo *t, bool bf16, otl_dnnl_matmul **out);
/* The rounded input a bf16 run writes into the scratch it is given. */
size_t otl_dnnl_matmul_scratch_bytes(const otl_dnnl_matmul *m);
onnxtl_status *otl_dnnl_matmul_run(otl_dnnl_matmul *m, const float *a, float *y, void *scratch);
void otl_dnnl_matmul_release(otl_dnnl_matmul *m);

#endif
