/* Backbone throughput: runs MODEL on a fixed batch after a warm-up and prints
 * images per second.  The input sits in the session's fastest host memory
 * (pinned on CUDA), as extract's batches do.
 * With STREAMS above 1, that many sessions run side by side, each on its own
 * thread (on CUDA, one batch's upload overlaps another's compute).
 * PRECISION is onnxtl_precision's number (4, int8, needs RANGES: a file of
 * the activation ranges, as `onnxtl features FILE --json` lists them).
 * usage: bench_backbone MODEL [BATCH] [ITERS] [THREADS] [OUTPUT] [DEVICE] [PRECISION 0-4] [STREAMS] [RANGES] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
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

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n = -1;
    if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) && (text = calloc((size_t)n + 1, 1)) &&
        fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    if (f) fclose(f);
    if (!text) fprintf(stderr, "bench_backbone: cannot read %s\n", path);
    return text;
}

/* One stream: a session, its input and its runs. */
typedef struct {
    onnxtl_session *s;
    onnxtl_tensor in, out;
    int iters;
    onnxtl_status *st;
} stream;

static void *run_stream(void *arg) {
    stream *b = arg;
    for (int i = 0; i < b->iters && !b->st; i++) b->st = onnxtl_session_run(b->s, &b->in, 1, &b->out, 1);
    return NULL;
}

static onnxtl_status *stream_init(stream *b, const onnxtl_model *m, const onnxtl_options *opts, int batch, const char *output) {
    onnxtl_status *st = onnxtl_session_create(m, opts, &b->s);
    if (st) return st;
    onnxtl_model_input(m, 0, &b->in);
    onnxtl_model_output(m, 0, &b->out);
    if (output && strcmp(output, "-")) b->out.name = output;
    b->in.dims[0] = batch;
    size_t n = 1;
    for (int k = 0; k < b->in.rank; k++) n *= (size_t)b->in.dims[k];
    float *x;
    if ((st = onnxtl_session_alloc_host(b->s, n * sizeof *x, (void **)&x))) return st;
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    b->in.data = x;
    return onnxtl_session_run(b->s, &b->in, 1, &b->out, 1); /* warm-up: plan and primitives */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [BATCH] [ITERS] [THREADS] [OUTPUT] [DEVICE] [PRECISION 0-4] [STREAMS] [RANGES]\n",
                argv[0]);
        return 2;
    }
    int batch = argc > 2 ? atoi(argv[2]) : 16, iters = argc > 3 ? atoi(argv[3]) : 5;
    int n_streams = argc > 8 ? atoi(argv[8]) : 1;
    onnxtl_options opts = {.threads = argc > 4 ? atoi(argv[4]) : 0, .device = argc > 6 ? argv[6] : NULL,
                           .precision = argc > 7 ? (onnxtl_precision)atoi(argv[7]) : ONNXTL_PRECISION_FP32};
    char *ranges = NULL;
    if (argc > 9 && !(opts.calibration = ranges = read_text(argv[9]))) return 1;
    if (batch < 1 || iters < 1 || n_streams < 1 || n_streams > 8) {
        fprintf(stderr, "bench_backbone: BATCH and ITERS must be positive, STREAMS 1 to 8\n");
        return 2;
    }
    onnxtl_model *m;
    onnxtl_status *st = onnxtl_model_load(argv[1], &m);
    if (st) return fail(st);
    stream streams[8] = {0};
    for (int i = 0; i < n_streams; i++) /* one after another: the first one's engine choices are cached for the rest */
        if ((st = stream_init(&streams[i], m, &opts, batch, argc > 5 ? argv[5] : NULL))) return fail(st);
    pthread_t threads[8];
    double t = now();
    for (int i = 0; i < n_streams; i++) {
        streams[i].iters = iters;
        if (pthread_create(&threads[i], NULL, run_stream, &streams[i])) {
            fprintf(stderr, "bench_backbone: cannot start a thread\n");
            return 1;
        }
    }
    for (int i = 0; i < n_streams; i++) pthread_join(threads[i], NULL);
    t = now() - t;
    for (int i = 0; i < n_streams; i++)
        if (streams[i].st) return fail(streams[i].st);
    printf("%.2f\n", (double)batch * iters * n_streams / t);
    for (int i = 0; i < n_streams; i++) {
        onnxtl_session_free_host(streams[i].s, (void *)streams[i].in.data);
        onnxtl_session_release(streams[i].s);
    }
    onnxtl_model_release(m);
    free(ranges);
    return 0;
}
