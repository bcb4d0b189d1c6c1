/* Where work runs: the device names users give ("cpu", "cuda", "cuda:N"), the
 * backends that run there and the precisions each computes in.  The session
 * and the head trainer both choose through here. */
#ifndef OTL_DEVICE_H
#define OTL_DEVICE_H

#include <stdbool.h>

#include "backend.h"
#include "head_backend.h"

typedef struct {
    bool cuda;
    int index; /* the GPU, for cuda */
} otl_device;

/* Parses a device name; NULL means the CPU. */
onnxtl_status *otl_device_parse(const char *name, otl_device *d);
/* The network backend on d, which must compute in precision p. */
onnxtl_status *otl_device_backend(const otl_device *d, onnxtl_precision p, const otl_backend **b);
/* The head-training backend on d: fp32 everywhere, tf32 too on CUDA (the
 * head's weights need float32 updates). */
onnxtl_status *otl_device_head_backend(const otl_device *d, onnxtl_precision p, const otl_head_backend **b);

/* What the CPU's kernels run on, for people comparing machines: oneDNN's
 * instruction set ("avx512_core_amx") and whether --precision bf16 runs. */
typedef struct {
    const char *isa;
    bool bf16;
    bool int8_vnni; /* int8 sums u8 x s8 products in 32 bits (VNNI, AMX); without, u8 inputs use 7 bits */
    const char *winograd; /* the ISA of the Winograd fp32 3x3 convolutions may run: "avx512", "avx2" or "none" */
} otl_cpu_facts;
void otl_cpu_facts_get(otl_cpu_facts *f);

/* The backends' settings from the environment, read once by the caller:
 * ONNXTL_LOG, ONNXTL_FALLBACK_OPS, ONNXTL_CUDA_LOG, ONNXTL_CUDNN=legacy, and
 * the cuDNN tuning cache at $ONNXTL_CACHE_DIR, else $XDG_CACHE_HOME/onnxtl,
 * else ~/.cache/onnxtl. */
void otl_backend_env_read(otl_backend_env *e);

#endif
