/* Backbone throughput: runs MODEL on a fixed batch after a warm-up and prints
 * images per second.  The input sits in the session's fastest host memory
 * (pinned on CUDA), as extract's batches do.
 * usage: bench_backbone MODEL [BATCH] [ITERS] [THREADS] [OUTPUT] [DEVICE] [PRECISION 0-3] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "onnxtl.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int fail(onnxtl_status *st) {
    fprintf(stderr, "bench_backbone: %s\n", onnxtl_status_message(st));
    onnxtl_status_release(st);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [BATCH] [ITERS] [THREADS] [OUTPUT]\n", argv[0]);
        return 2;
    }
    int batch = argc > 2 ? atoi(argv[2]) : 16, iters = argc > 3 ? atoi(argv[3]) : 5;
    onnxtl_options opts = {.threads = argc > 4 ? atoi(argv[4]) : 0, .device = argc > 6 ? argv[6] : NULL,
                           .precision = argc > 7 ? (onnxtl_precision)atoi(argv[7]) : ONNXTL_PRECISION_FP32};
    onnxtl_model *m;
    onnxtl_session *s;
    onnxtl_status *st = onnxtl_model_load(argv[1], &m);
    if (st) return fail(st);
    if ((st = onnxtl_session_create(m, &opts, &s))) return fail(st);
    onnxtl_tensor in, out = {0};
    onnxtl_model_input(m, 0, &in);
    onnxtl_model_output(m, 0, &out);
    if (argc > 5 && strcmp(argv[5], "-")) out.name = argv[5];
    in.dims[0] = batch;
    size_t n = (size_t)batch * 3 * (size_t)in.dims[2] * (size_t)in.dims[3];
    float *x;
    if ((st = onnxtl_session_alloc_host(s, n * sizeof *x, (void **)&x))) return fail(st);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    in.data = x;
    if ((st = onnxtl_session_run(s, &in, 1, &out, 1))) return fail(st); /* warm-up: plan and primitives */
    double t = now();
    for (int i = 0; i < iters; i++)
        if ((st = onnxtl_session_run(s, &in, 1, &out, 1))) return fail(st);
    t = now() - t;
    printf("%.2f\n", (double)batch * iters / t);
    onnxtl_session_free_host(s, x);
    onnxtl_session_release(s);
    onnxtl_model_release(m);
    return 0;
}
