/* A Linear layer (MatMul by a constant K x N matrix, the batch dimensions of
 * its input one after another) on oneDNN's matmul primitive in bf16: the
 * weights rounded once, each input rounded as it comes, the sums and the
 * output in fp32.  In fp32, MatMul stays on sgemm (gemm.c). */
#ifndef OTL_DNNL_MATMUL_H
#define OTL_DNNL_MATMUL_H

#include <oneapi/dnnl/dnnl.h>

#include "cpu_kernels.h"

typedef struct otl_dnnl_matmul otl_dnnl_matmul;

bool otl_dnnl_matmul_supported(const otl_node *n, const otl_tinfo *t);
onnxtl_status *otl_dnnl_matmul_create(dnnl_engine_t engine, dnnl_stream_t stream, const otl_node *n,
                                      const otl_tinfo *t, otl_dnnl_matmul **out);
/* The rounded input a run writes into the scratch it is given. */
size_t otl_dnnl_matmul_scratch_bytes(const otl_dnnl_matmul *m);
onnxtl_status *otl_dnnl_matmul_run(otl_dnnl_matmul *m, const float *a, float *y, void *scratch);
void otl_dnnl_matmul_release(otl_dnnl_matmul *m);

#endif
