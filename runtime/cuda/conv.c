#include "conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dtype.h"
#include "kernels.h"
#include "onnxtl_base.h"

enum { UID_X = 1, UID_W, UID_Y, UID_B, UID_Z, UID_VIRTUAL = 100 };
enum { KIND_FUSED = 'f', KIND_CONV = 'c' };
#define MAX_DESCS 24
/* Finalized candidates timed per graph.  Finalizing a fused graph's plan
 * usually compiles a kernel, so fewer of those. */
#define MAX_TIMED_FUSED 2
#define MAX_TIMED 5
#define TIMED_RUNS 3
#define MAX_WORKSPACE ((int64_t)1 << 30)

typedef struct {
    cudnnBackendDescriptor_t d[MAX_DESCS];
    int n;
} desc_set;

struct otl_conv {
    char *key;
    desc_set ds; /* the operation graph, the engine configuration and the plan */
    cudnnBackendDescriptor_t plan;
    bool fused, residual, relu;
    int dtype;
    int64_t y_count, channels;
    size_t workspace;
};

typedef struct {
    char *key;
    char kind;
    int index; /* in cuDNN's heuristic list for that graph */
} choice;

struct otl_conv_tuner {
    cudnnHandle_t dnn;
    cudaStream_t stream;
    char *path;
    char device[320]; /* the GPU and cuDNN version: part of every key */
    otl_conv **plans;
    int n_plans;
    choice *choices;
    int n_choices;
    int timed;     /* convolutions whose engines were timed in this run */
    int log_level; /* ONNXTL_CUDA_LOG: 2 lists every candidate */
    otl_log log;
    bool dirty;
};

/* ---- descriptors ---- */

static onnxtl_status *desc_new(desc_set *s, cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *out) {
    if (s->n == MAX_DESCS) return otl_error(ONNXTL_ERR_RUNTIME, "cuDNN graph: too many descriptors");
    CUDNN_TRY(cudnnBackendCreateDescriptor(type, out));
    s->d[s->n++] = *out;
    return NULL;
}

static void desc_free(desc_set *s) {
    while (s->n > 0) cudnnBackendDestroyDescriptor(s->d[--s->n]);
}

#define SET(d, name, type, count, ptr) CUDNN_TRY(cudnnBackendSetAttribute(d, name, type, count, ptr))

/* dims in ONNX order over channels-last data: strides of NHWC (or KRSC). */
static onnxtl_status *tensor(desc_set *s, int64_t uid, cudnnDataType_t type, const int64_t dims[4], bool is_virtual,
                             cudnnBackendDescriptor_t *out) {
    const int64_t strides[4] = {dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]}, align = 16;
    OTL_TRY(desc_new(s, CUDNN_BACKEND_TENSOR_DESCRIPTOR, out));
    SET(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    SET(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    SET(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
    SET(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SET(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    SET(*out, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    CUDNN_TRY(cudnnBackendFinalize(*out));
    return NULL;
}

static onnxtl_status *conv_op(desc_set *s, const otl_conv_shape *sh, cudnnBackendDescriptor_t x,
                              cudnnBackendDescriptor_t w, cudnnBackendDescriptor_t y, cudnnBackendDescriptor_t *op) {
    const int64_t spatial = 2;
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const float alpha = 1.0f, beta = 0.0f;
    cudnnBackendDescriptor_t conv;
    OTL_TRY(desc_new(s, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &conv));
    SET(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial);
    SET(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    SET(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    SET(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, sh->dilation);
    SET(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, sh->stride);
    SET(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, sh->pad);
    SET(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, sh->pad);
    CUDNN_TRY(cudnnBackendFinalize(conv));
    OTL_TRY(desc_new(s, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, op));
    SET(*op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SET(*op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w);
    SET(*op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    SET(*op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
    SET(*op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
    SET(*op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
    CUDNN_TRY(cudnnBackendFinalize(*op));
    return NULL;
}

/* y = x + b (b may be NULL for ReLU), computed in float. */
static onnxtl_status *pointwise_op(desc_set *s, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x,
                                   cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t y,
                                   cudnnBackendDescriptor_t *op) {
    const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t pw;
    OTL_TRY(desc_new(s, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw));
    SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CUDNN_TRY(cudnnBackendFinalize(pw));
    OTL_TRY(desc_new(s, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op));
    SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b) SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    CUDNN_TRY(cudnnBackendFinalize(*op));
    return NULL;
}

/* The epilogue after the convolution: + bias, + z, ReLU; each stage's result
 * stays in float until the last writes y. */
static onnxtl_status *epilogue_ops(desc_set *s, const otl_conv_shape *sh, cudnnBackendDescriptor_t acc,
                                   cudnnBackendDescriptor_t y, cudnnBackendDescriptor_t *ops, int *n_ops) {
    const int64_t bias_dims[4] = {1, sh->y[1], 1, 1};
    const int stages = 1 + sh->residual + sh->relu;
    cudnnBackendDescriptor_t b, z = NULL, out;
    OTL_TRY(tensor(s, UID_B, sh->io, bias_dims, false, &b));
    if (sh->residual) OTL_TRY(tensor(s, UID_Z, sh->io, sh->y, false, &z));
    for (int k = 0; k < stages; k++) {
        if (k == stages - 1) out = y;
        else OTL_TRY(tensor(s, UID_VIRTUAL + 1 + k, CUDNN_DATA_FLOAT, sh->y, true, &out));
        const bool relu = sh->relu && k == stages - 1;
        OTL_TRY(pointwise_op(s, relu ? CUDNN_POINTWISE_RELU_FWD : CUDNN_POINTWISE_ADD, acc, relu ? NULL : k ? z : b,
                             out, &ops[(*n_ops)++]));
        acc = out;
    }
    return NULL;
}

static onnxtl_status *build_graph(cudnnHandle_t dnn, const otl_conv_shape *sh, char kind, desc_set *s,
                                  cudnnBackendDescriptor_t *graph) {
    cudnnBackendDescriptor_t x, w, y, acc, ops[4];
    int n_ops = 0;
    OTL_TRY(tensor(s, UID_X, sh->io, sh->x, false, &x));
    OTL_TRY(tensor(s, UID_W, sh->io, sh->w, false, &w));
    OTL_TRY(tensor(s, UID_Y, sh->io, sh->y, false, &y));
    acc = y;
    if (kind == KIND_FUSED) OTL_TRY(tensor(s, UID_VIRTUAL, CUDNN_DATA_FLOAT, sh->y, true, &acc));
    OTL_TRY(conv_op(s, sh, x, w, acc, &ops[n_ops++]));
    if (kind == KIND_FUSED) OTL_TRY(epilogue_ops(s, sh, acc, y, ops, &n_ops));
    OTL_TRY(desc_new(s, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, graph));
    SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n_ops, ops);
    SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &dnn);
    CUDNN_TRY(cudnnBackendFinalize(*graph));
    return NULL;
}

/* ---- engines ---- */

typedef struct {
    cudnnBackendDescriptor_t heur, *cfg;
    int64_t n;
} engine_list;

static void engines_free(engine_list *l) {
    for (int64_t i = 0; l->cfg && i < l->n; i++)
        if (l->cfg[i]) cudnnBackendDestroyDescriptor(l->cfg[i]);
    free(l->cfg);
    if (l->heur) cudnnBackendDestroyDescriptor(l->heur);
    *l = (engine_list){0};
}

/* cuDNN's candidates for graph, best guess first. */
static onnxtl_status *engines_get(cudnnBackendDescriptor_t graph, engine_list *l) {
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    CUDNN_TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &l->heur));
    SET(l->heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    SET(l->heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    CUDNN_TRY(cudnnBackendFinalize(l->heur));
    int64_t count = 0;
    CUDNN_TRY(cudnnBackendGetAttribute(l->heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                       NULL));
    if (count <= 0) return NULL;
    if (!(l->cfg = calloc((size_t)count, sizeof *l->cfg))) return otl_nomem();
    for (l->n = 0; l->n < count; l->n++)
        CUDNN_TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &l->cfg[l->n]));
    int64_t got = 0;
    CUDNN_TRY(cudnnBackendGetAttribute(l->heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                       &got, l->cfg));
    for (int64_t i = got; i < l->n; i++) { /* fewer came back than counted */
        cudnnBackendDestroyDescriptor(l->cfg[i]);
        l->cfg[i] = NULL;
    }
    l->n = got < l->n ? got : l->n;
    return NULL;
}

/* The engine behind cfg: its numerical notes, and its global index (-1 if unknown). */
static bool engine_notes(cudnnBackendDescriptor_t cfg, int64_t *global, cudnnBackendNumericalNote_t *notes, int64_t *n) {
    cudnnBackendDescriptor_t engine;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine)) return false;
    int64_t got = 0;
    bool ok = !cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got, &engine) &&
              !cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                        CUDNN_NUMERICAL_NOTE_TYPE_COUNT, n, notes);
    if (!ok || cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &got, global))
        *global = -1; /* only for the log */
    cudnnBackendDestroyDescriptor(engine);
    return ok;
}

/* fp32 means true fp32: no tensor cores and no inputs rounded to a smaller
 * type; and no engine accumulates in half precision. */
static bool engine_allowed(cudnnBackendDescriptor_t cfg, onnxtl_precision precision) {
    int64_t global, n = 0;
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    bool ok = engine_notes(cfg, &global, notes, &n);
    for (int64_t i = 0; ok && i < n; i++) {
        if (notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION) ok = false;
        if (precision == ONNXTL_PRECISION_FP32 &&
            (notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE || notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS))
            ok = false;
    }
    return ok;
}

/* ONNXTL_CUDA_LOG=2: one line per candidate, to see why an engine was or was not chosen. */
static void log_candidate(const otl_conv_tuner *t, const char *key, char kind, int64_t i, cudnnBackendDescriptor_t cfg,
                          const char *outcome) {
    static const char *const names[] = {"tensor_core", "down_convert", "reduced_precision_reduction", "fft",
                                        "nondeterministic", "winograd", "winograd_4x4", "winograd_6x6",
                                        "winograd_13x13", "strict_nan"};
    if (t->log_level < 2) return;
    int64_t global = -1, n = 0;
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    char text[256] = "";
    if (engine_notes(cfg, &global, notes, &n))
        for (int64_t k = 0; k < n; k++)
            if ((int)notes[k] >= 0 && (int)notes[k] < (int)(sizeof names / sizeof *names))
                snprintf(text + strlen(text), sizeof text - strlen(text), " %s", names[notes[k]]);
    otl_log_line(&t->log, "cuda: [%s] %s candidate %lld (engine %lld;%s): %s", key,
            kind == KIND_FUSED ? "fused" : "conv-only", (long long)i, (long long)global, *text ? text : " no notes",
            outcome);
}

/* An execution plan for cfg, or NULL where this engine cannot run the graph. */
static cudnnBackendDescriptor_t plan_for(cudnnHandle_t dnn, cudnnBackendDescriptor_t cfg, int64_t *workspace) {
    cudnnBackendDescriptor_t plan;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan)) return NULL;
    int64_t n = 0;
    if (cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &dnn) ||
        cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg) ||
        cudnnBackendFinalize(plan) ||
        cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, workspace) ||
        *workspace < 0 || *workspace > MAX_WORKSPACE) {
        cudnnBackendDestroyDescriptor(plan);
        return NULL;
    }
    return plan;
}

/* ---- running ---- */

static onnxtl_status *execute(cudnnHandle_t dnn, cudnnBackendDescriptor_t plan, const otl_conv_args *a, bool fused,
                              bool residual) {
    int64_t uids[5] = {UID_X, UID_W, UID_Y, UID_B, UID_Z};
    void *ptrs[5] = {(void *)a->x, (void *)a->w, a->y, (void *)a->bias, (void *)a->z};
    const int64_t n = fused ? 4 + residual : 3;
    cudnnBackendDescriptor_t pack;
    CUDNN_TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    cudnnStatus_t e = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (!e) e = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (!e) e = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &a->workspace);
    if (!e) e = cudnnBackendFinalize(pack);
    if (!e) e = cudnnBackendExecute(dnn, plan, pack);
    cudnnBackendDestroyDescriptor(pack);
    CUDNN_TRY(e);
    return NULL;
}

static int onnx_dtype(cudnnDataType_t io) {
    return io == CUDNN_DATA_HALF ? ONNXTL_FLOAT16 : io == CUDNN_DATA_BFLOAT16 ? ONNXTL_BFLOAT16 : ONNXTL_FLOAT;
}

onnxtl_status *otl_conv_run(cudnnHandle_t dnn, const otl_conv *c, const otl_conv_args *a) {
    OTL_TRY(execute(dnn, c->plan, a, c->fused, c->residual));
    if (!c->fused) {
        cudaStream_t stream;
        CUDNN_TRY(cudnnGetStream(dnn, &stream));
        CUDA_TRY(otl_cuda_add_bias(a->y, a->bias, c->residual ? a->z : NULL, c->dtype, c->y_count, c->channels, c->relu,
                                   stream));
    }
    return NULL;
}

static void describe_epilogue(otl_conv *c, const otl_conv_shape *sh) {
    c->residual = sh->residual, c->relu = sh->relu, c->dtype = onnx_dtype(sh->io);
    c->channels = sh->y[1], c->y_count = sh->y[0] * sh->y[2] * sh->y[3];
}

/* Milliseconds for TIMED_RUNS runs after one warm-up, or a negative time
 * where the candidate fails to run. */
static float time_plan(otl_conv_tuner *t, const otl_conv *c, const otl_conv_args *args) {
    otl_conv_args a = *args;
    cudaEvent_t start = NULL, stop = NULL;
    float ms = -1.0f;
    if (cudaMalloc(&a.workspace, c->workspace + 1) != cudaSuccess) {
        cudaGetLastError();
        return ms;
    }
    onnxtl_status *st = cudaEventCreate(&start) || cudaEventCreate(&stop)
                            ? otl_error(ONNXTL_ERR_RUNTIME, "CUDA events")
                            : otl_conv_run(t->dnn, c, &a);
    if (!st && !cudaEventRecord(start, t->stream)) {
        for (int i = 0; i < TIMED_RUNS && !st; i++) st = otl_conv_run(t->dnn, c, &a);
        if (!st && !cudaEventRecord(stop, t->stream) && !cudaEventSynchronize(stop)) cudaEventElapsedTime(&ms, start, stop);
    }
    if (st) ms = -1.0f;
    onnxtl_status_release(st);
    cudaStreamSynchronize(t->stream);
    cudaGetLastError(); /* a candidate that failed must not fail the next call */
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    cudaFree(a.workspace);
    return ms;
}

/* ---- choosing ---- */

static void conv_free(otl_conv *c) {
    if (!c) return;
    desc_free(&c->ds);
    free(c->key);
    free(c);
}

/* The plan for candidate index of kind's graph, kept in c; or why not. */
static onnxtl_status *adopt(otl_conv_tuner *t, const otl_conv_shape *sh, char kind, int index, otl_conv *c) {
    cudnnBackendDescriptor_t graph;
    OTL_TRY(build_graph(t->dnn, sh, kind, &c->ds, &graph));
    engine_list l = {0};
    onnxtl_status *st = engines_get(graph, &l);
    int64_t ws = 0;
    if (!st && c->ds.n + 2 > MAX_DESCS) st = otl_error(ONNXTL_ERR_RUNTIME, "cuDNN graph: too many descriptors");
    if (!st && (index >= l.n || !engine_allowed(l.cfg[index], sh->precision) || !(c->plan = plan_for(t->dnn, l.cfg[index], &ws))))
        st = otl_error(ONNXTL_ERR_RUNTIME, "cuDNN engine %d no longer runs this convolution", index);
    if (!st) { /* the plan refers to its configuration: both live as long as c */
        c->ds.d[c->ds.n++] = l.cfg[index];
        c->ds.d[c->ds.n++] = c->plan;
        l.cfg[index] = NULL;
        c->fused = kind == KIND_FUSED;
        c->workspace = (size_t)ws;
    }
    engines_free(&l);
    return st;
}

/* Times up to MAX_TIMED allowed candidates of kind's graph; best_ms and
 * best_index improve where one beats them. */
static void time_candidates(otl_conv_tuner *t, const char *key, const otl_conv_shape *sh, const otl_conv_args *args,
                            char kind, float *best_ms, char *best_kind, int *best_index) {
    desc_set s = {0};
    cudnnBackendDescriptor_t graph;
    engine_list l = {0};
    onnxtl_status *st = build_graph(t->dnn, sh, kind, &s, &graph);
    if (!st) st = engines_get(graph, &l);
    const int64_t max_timed = kind == KIND_FUSED ? MAX_TIMED_FUSED : MAX_TIMED;
    for (int64_t i = 0, timed = 0; !st && i < l.n && timed < max_timed; i++) {
        int64_t ws = 0;
        if (!engine_allowed(l.cfg[i], sh->precision)) {
            log_candidate(t, key, kind, i, l.cfg[i], "refused for this precision");
            continue;
        }
        cudnnBackendDescriptor_t plan = plan_for(t->dnn, l.cfg[i], &ws);
        if (!plan) {
            log_candidate(t, key, kind, i, l.cfg[i], "no plan (unsupported, or workspace over the cap)");
            continue;
        }
        timed++;
        otl_conv candidate = {.plan = plan, .fused = kind == KIND_FUSED, .workspace = (size_t)ws};
        describe_epilogue(&candidate, sh);
        float ms = time_plan(t, &candidate, args);
        char outcome[96];
        snprintf(outcome, sizeof outcome, "%.3f ms for %d runs, workspace %.1f MiB", ms, TIMED_RUNS, (double)ws / 1048576.0);
        log_candidate(t, key, kind, i, l.cfg[i], ms < 0.0f ? "failed to run" : outcome);
        if (ms >= 0.0f && (*best_ms < 0.0f || ms < *best_ms)) *best_ms = ms, *best_kind = kind, *best_index = (int)i;
        cudnnBackendDestroyDescriptor(plan);
    }
    if (st && t->log_level >= 2)
        otl_log_line(&t->log, "cuda: [%s] no %s candidates: %s", key, kind == KIND_FUSED ? "fused" : "conv-only",
                onnxtl_status_message(st));
    onnxtl_status_release(st); /* a graph cuDNN cannot build has no candidates */
    cudaGetLastError();
    engines_free(&l);
    desc_free(&s);
}

static void shape_key(const otl_conv_tuner *t, const otl_conv_shape *sh, char *key, size_t size) {
    const int64_t *x = sh->x, *w = sh->w;
    snprintf(key, size, "%s io%d p%d x%lldx%lldx%lldx%lld w%lldx%lldx%lldx%lld pad%lld,%lld s%lld,%lld d%lld,%lld r%d a%d",
             t->device, (int)sh->io, sh->precision, (long long)x[0], (long long)x[1], (long long)x[2], (long long)x[3],
             (long long)w[0], (long long)w[1], (long long)w[2], (long long)w[3], (long long)sh->pad[0],
             (long long)sh->pad[1], (long long)sh->stride[0], (long long)sh->stride[1], (long long)sh->dilation[0],
             (long long)sh->dilation[1], sh->residual, sh->relu);
}

static choice *find_choice(const otl_conv_tuner *t, const char *key) {
    for (int i = 0; i < t->n_choices; i++)
        if (!strcmp(t->choices[i].key, key)) return &t->choices[i];
    return NULL;
}

/* Records key's choice, replacing a stale one (a cached engine that no longer runs). */
static onnxtl_status *remember(otl_conv_tuner *t, const char *key, char kind, int index) {
    choice *known = find_choice(t, key);
    if (known) {
        known->kind = kind, known->index = index;
        t->dirty = true;
        return NULL;
    }
    choice *c = realloc(t->choices, sizeof *c * (size_t)(t->n_choices + 1));
    if (!c) return otl_nomem();
    t->choices = c;
    if (!(c[t->n_choices].key = strdup(key))) return otl_nomem();
    c[t->n_choices].kind = kind;
    c[t->n_choices++].index = index;
    t->dirty = true;
    return NULL;
}

static onnxtl_status *tune(otl_conv_tuner *t, const otl_conv_shape *sh, const otl_conv_args *args, otl_conv *c) {
    float best_ms = -1.0f;
    char kind = 0;
    int index = -1;
    time_candidates(t, c->key, sh, args, KIND_FUSED, &best_ms, &kind, &index);
    time_candidates(t, c->key, sh, args, KIND_CONV, &best_ms, &kind, &index);
    t->timed++;
    if (best_ms < 0.0f) return otl_error(ONNXTL_ERR_RUNTIME, "cuDNN has no engine for this convolution");
    OTL_TRY(adopt(t, sh, kind, index, c));
    return remember(t, c->key, kind, index);
}

static bool same_key(const otl_conv *c, const char *key) { return !strcmp(c->key, key); }

onnxtl_status *otl_conv_plan(otl_conv_tuner *t, const otl_conv_shape *sh, const otl_conv_args *args,
                             const otl_conv **out) {
    char key[512];
    shape_key(t, sh, key, sizeof key);
    for (int i = 0; i < t->n_plans; i++)
        if (same_key(t->plans[i], key)) return *out = t->plans[i], NULL;
    otl_conv **plans = realloc(t->plans, sizeof *plans * (size_t)(t->n_plans + 1));
    if (!plans) return otl_nomem();
    t->plans = plans;
    otl_conv *c = calloc(1, sizeof *c);
    if (!c || !(c->key = strdup(key))) {
        free(c);
        return otl_nomem();
    }
    describe_epilogue(c, sh);
    const choice *known = find_choice(t, key);
    onnxtl_status *st = known ? adopt(t, sh, known->kind, known->index, c) : NULL;
    if (st || !known) { /* not cached, or the cached engine is gone: time the candidates */
        onnxtl_status_release(st);
        desc_free(&c->ds);
        st = tune(t, sh, args, c);
    }
    if (st) {
        conv_free(c);
        return st;
    }
    t->plans[t->n_plans++] = c;
    *out = c;
    return NULL;
}

int otl_conv_tuner_timed(const otl_conv_tuner *t) { return t->timed; }
bool otl_conv_fused(const otl_conv *c) { return c->fused; }
size_t otl_conv_workspace(const otl_conv *c) { return c->workspace; }

/* ---- the cache file: one "key<TAB>kind index" line per convolution ---- */

static void load_choices(otl_conv_tuner *t) {
    FILE *f = t->path ? fopen(t->path, "r") : NULL;
    if (!f) return; /* no cache yet */
    char line[768];
    while (fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t'), kind = 0;
        int index = -1;
        if (!tab || sscanf(tab + 1, "%c %d", &kind, &index) != 2 || index < 0 || (kind != KIND_FUSED && kind != KIND_CONV))
            continue; /* a damaged line costs one tuning, nothing else */
        *tab = '\0';
        if (!find_choice(t, line) && remember(t, line, kind, index)) break; /* the first line of a key counts */
    }
    fclose(f);
    t->dirty = false;
}

void otl_conv_tuner_save(otl_conv_tuner *t) {
    if (!t->path || !t->dirty) return;
    char tmp[4200], dir[4096];
    snprintf(dir, sizeof dir, "%s", t->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) /* mkdir -p */
            if (*p == '/') *p = '\0', mkdir(dir, 0755), *p = '/';
        mkdir(dir, 0755);
    }
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", t->path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL;
    for (int i = 0; ok && i < t->n_choices; i++)
        ok = fprintf(f, "%s\t%c %d\n", t->choices[i].key, t->choices[i].kind, t->choices[i].index) > 0;
    if (f && fclose(f)) ok = false;
    if (ok && rename(tmp, t->path)) ok = false;
    if (!ok) {
        unlink(tmp);
        otl_log_line(&t->log, "warning: cannot write the cuDNN tuning cache %s; the next run tunes again", t->path);
    }
    t->dirty = !ok;
}

onnxtl_status *otl_conv_tuner_create(cudnnHandle_t dnn, cudaStream_t stream, const char *cache_path, int log_level,
                                     otl_log log, otl_conv_tuner **out) {
    otl_conv_tuner *t = calloc(1, sizeof *t);
    if (!t) return otl_nomem();
    t->dnn = dnn, t->stream = stream, t->log_level = log_level, t->log = log;
    if (!*cache_path) cache_path = NULL;
    int dev = 0;
    struct cudaDeviceProp prop;
    cudaError_t e = cudaGetDevice(&dev);
    if (!e) e = cudaGetDeviceProperties(&prop, dev);
    if (e || (cache_path && !(t->path = strdup(cache_path)))) {
        free(t);
        CUDA_TRY(e);
        return otl_nomem();
    }
    snprintf(t->device, sizeof t->device, "%s sm%d%d x%d cudnn%zu", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, cudnnGetVersion());
    for (char *p = t->device; *p; p++)
        if (*p == '\t' || *p == '\n') *p = ' ';
    load_choices(t);
    *out = t;
    return NULL;
}

void otl_conv_tuner_release(otl_conv_tuner *t) {
    if (!t) return;
    for (int i = 0; i < t->n_plans; i++) conv_free(t->plans[i]);
    for (int i = 0; i < t->n_choices; i++) free(t->choices[i].key);
    free(t->plans);
    free(t->choices);
    free(t->path);
    free(t);
}
