#include "device.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_conv.h"

onnxtl_status *otl_device_parse(const char *name, otl_device *d) {
    *d = (otl_device){0};
    if (!name || !strcmp(name, "cpu")) return NULL;
    char *end = NULL;
    if (strncmp(name, "cuda", 4) || (name[4] && (name[4] != ':' || (d->index = (int)strtol(name + 5, &end, 10)) < 0 ||
                                                  end == name + 5 || *end)))
        return otl_error(ONNXTL_ERR_ARG, "unknown device '%s' (cpu, cuda or cuda:N)", name);
#ifndef ONNXTL_CUDA
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "this onnxtl was built without CUDA; rebuild with 'make CUDA=1'");
#endif
    d->cuda = true;
    return NULL;
}

static onnxtl_status *cpu_fp32_only(onnxtl_precision p) {
    return p == ONNXTL_PRECISION_FP32
               ? NULL
               : otl_error(ONNXTL_ERR_ARG, "the CPU trains in fp32 only; --precision needs --device cuda");
}

/* Networks on the CPU: fp32, int8 convolutions (oneDNN has them for every
 * x86-64 ISA), or bf16 ones where the CPU multiplies bf16. */
static onnxtl_status *cpu_precision(onnxtl_precision p) {
    char why[256];
    if (p == ONNXTL_PRECISION_FP32 || p == ONNXTL_PRECISION_INT8) return NULL;
    if (p != ONNXTL_PRECISION_BF16)
        return otl_error(ONNXTL_ERR_ARG, "the CPU runs fp32, bf16 or int8; tf32 and fp16 need --device cuda");
    return otl_cpu_bf16_available(why, sizeof why) ? NULL : otl_error(ONNXTL_ERR_UNSUPPORTED, "%s", why);
}

void otl_cpu_facts_get(otl_cpu_facts *f) {
    char why[256];
    *f = (otl_cpu_facts){otl_cpu_isa_name(), otl_cpu_bf16_available(why, sizeof why), otl_cpu_u8_full_range(),
                           otl_cpu_winograd_isa()};
}

onnxtl_status *otl_device_backend(const otl_device *d, onnxtl_precision p, const otl_backend **b) {
    *b = &otl_backend_cpu;
#ifdef ONNXTL_CUDA
    if (d->cuda) *b = &otl_backend_cuda;
#endif
    if (d->cuda && p == ONNXTL_PRECISION_INT8)
        return otl_error(ONNXTL_ERR_ARG, "--precision int8 runs on the CPU; on cuda use fp16 or bf16");
    return d->cuda ? NULL : cpu_precision(p);
}

onnxtl_status *otl_device_head_backend(const otl_device *d, onnxtl_precision p, const otl_head_backend **b) {
    *b = &otl_head_cpu;
#ifdef ONNXTL_CUDA
    if (d->cuda) *b = &otl_head_cuda;
#endif
    if (!d->cuda) return cpu_fp32_only(p);
    return p == ONNXTL_PRECISION_FP32 || p == ONNXTL_PRECISION_TF32
               ? NULL
               : otl_error(ONNXTL_ERR_ARG, "fit-head trains in fp32 or tf32 (the head's weights need float32 updates)");
}

void otl_backend_env_read(otl_backend_env *e) {
    const char *log = getenv("ONNXTL_CUDA_LOG"), *api = getenv("ONNXTL_CUDNN");
    const char *dir = getenv("ONNXTL_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *placement = getenv("ONNXTL_LOG"), *fallback = getenv("ONNXTL_FALLBACK_OPS");
    *e = (otl_backend_env){.cuda_log = log != NULL, .cuda_log_level = log ? atoi(log) : 0,
                           .cudnn_legacy = api && !strcmp(api, "legacy"), .log = placement && atoi(placement) > 0};
    snprintf(e->fallback_ops, sizeof e->fallback_ops, "%s", fallback ? fallback : "");
    const size_t size = sizeof e->tuning_cache;
    int n = dir && *dir ? snprintf(e->tuning_cache, size, "%s/cudnn-plans.tsv", dir)
            : xdg && *xdg ? snprintf(e->tuning_cache, size, "%s/onnxtl/cudnn-plans.tsv", xdg)
            : home && *home ? snprintf(e->tuning_cache, size, "%s/.cache/onnxtl/cudnn-plans.tsv", home)
            : -1;
    if (n < 0 || (size_t)n >= size) e->tuning_cache[0] = '\0';
}

void otl_log_vline(const otl_log *log, const char *fmt, va_list ap) {
    if (!log || !log->fn) return;
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    log->fn(log->ctx, line);
}

void otl_log_line(const otl_log *log, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    otl_log_vline(log, fmt, ap);
    va_end(ap);
}
