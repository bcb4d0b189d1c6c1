/* The CUDA backend: cuDNN convolutions and pooling in NHWC (tensor cores in
 * TF32, fp16 and bf16), cuBLAS for Gemm, small kernels for the rest; the
 * steps are captured once into a CUDA graph and replayed.  Convolutions go
 * through cuDNN's graph API with timed engine choice (conv.c); the legacy
 * API runs those the graph API refuses, or all of them with
 * ONNXTL_CUDNN=legacy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "check.h"
#include "conv.h"
#include "dtype.h"
#include "kernels.h"

#define MAX_WORKSPACE ((size_t)1 << 30)

typedef struct {
    const otl_conv *tuned; /* a convolution on the graph API; else the legacy fields below */
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    cudnnPoolingDescriptor_t pool;
    cudnnActivationDescriptor_t act;
    void *weights, *bias_data; /* device, in the compute type */
    bool to_nchw;              /* a copy op that must reorder an NHWC input */
    bool via_workspace;        /* ... into its own buffer (the plan let the output take it over) */
} cuda_step;

typedef struct {
    const otl_plan *plan;
    int dtype;
    onnxtl_precision precision;
    otl_backend_env env;
    otl_log log;
    size_t esize;
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    otl_conv_tuner *tuner;
    bool legacy_only;
    char refusal[256]; /* why the graph API refused the first convolution it refused */
    void *arena, *workspace;
    void *residual; /* a copy of a residual input that shares its buffer with the output */
    size_t workspace_bytes;
    float *staging; /* float32 inputs and outputs on their way */
    size_t staging_bytes;
    void **ptr;  /* per value: device pointer */
    bool *nhwc;  /* per value: 4-D and channels-last */
    void **owned; /* device buffers to free */
    int n_owned;
    cuda_step *steps;
    cudaGraphExec_t graph;
    bool graph_tried;
} cuda_state;

static onnxtl_status *dev_alloc(cuda_state *s, size_t bytes, void **out) {
    void **o = realloc(s->owned, sizeof *o * (size_t)(s->n_owned + 1));
    if (!o) return otl_nomem();
    s->owned = o;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        const int64_t batch = s->plan->n_inputs ? s->plan->t[s->plan->inputs[0]].dims[0] : 1;
        return otl_error(ONNXTL_ERR_NOMEM, "out of GPU memory allocating %.1f MiB for batch %lld; try a batch of %lld",
                         (double)bytes / 1048576.0, (long long)batch, (long long)(batch > 1 ? batch / 2 : 1));
    }
    CUDA_TRY(e);
    s->owned[s->n_owned++] = *out;
    return NULL;
}

static cudnnDataType_t dnn_type(int dtype) {
    return dtype == ONNXTL_FLOAT16 ? CUDNN_DATA_HALF : dtype == ONNXTL_BFLOAT16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

static cudaDataType_t blas_type(int dtype) {
    return dtype == ONNXTL_FLOAT16 ? CUDA_R_16F : dtype == ONNXTL_BFLOAT16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Uploads float32 host data in the compute type (through the staging buffer). */
static onnxtl_status *upload(cuda_state *s, const float *host, size_t count, void **dev) {
    OTL_TRY(dev_alloc(s, count * s->esize, dev));
    float *tmp;
    CUDA_TRY(cudaMalloc((void **)&tmp, count * sizeof(float) + 1));
    /* On our stream: a plain cudaMemcpy from pageable memory may return before its DMA
     * lands, and our non-blocking stream would not wait for it. */
    cudaError_t e = cudaMemcpyAsync(tmp, host, count * sizeof(float), cudaMemcpyHostToDevice, s->stream);
    if (e == cudaSuccess) e = otl_cuda_from_f32(tmp, *dev, s->dtype, 1, 1, (int64_t)count, 0, s->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s->stream);
    cudaFree(tmp);
    CUDA_TRY(e);
    return NULL;
}

static bool is_4d(const otl_tinfo *t) { return t->rank == 4 && t->dtype == ONNXTL_FLOAT; }
static int64_t hw(const otl_tinfo *t) { return t->dims[2] * t->dims[3]; }

static onnxtl_status *unsupported(const otl_node *n, const char *why) {
    return otl_error(ONNXTL_ERR_UNSUPPORTED, "node '%s' (%s): %s on the CUDA backend; run it with --device cpu",
                     n->name, otl_op_name(n->op), why);
}

static onnxtl_status *tensor_nhwc(cudnnTensorDescriptor_t *d, int dtype, const int64_t *dims) {
    CUDNN_TRY(cudnnCreateTensorDescriptor(d));
    CUDNN_TRY(cudnnSetTensor4dDescriptor(*d, CUDNN_TENSOR_NHWC, dnn_type(dtype), (int)dims[0], (int)dims[1], (int)dims[2],
                                         (int)dims[3]));
    return NULL;
}

/* Filters go to KRSC order (cuDNN's NHWC filter layout). */
static onnxtl_status *upload_filter(cuda_state *s, const otl_tinfo *w, void **dev) {
    const int64_t k = w->dims[0], c = w->dims[1], rs = w->dims[2] * w->dims[3];
    float *krsc = malloc(sizeof(float) * (size_t)(k * c * rs) + 1);
    if (!krsc) return otl_nomem();
    const float *oihw = w->data;
    for (int64_t o = 0; o < k; o++)
        for (int64_t i = 0; i < c; i++)
            for (int64_t p = 0; p < rs; p++) krsc[(o * rs + p) * c + i] = oihw[(o * c + i) * rs + p];
    onnxtl_status *st = upload(s, krsc, (size_t)(k * c * rs), dev);
    free(krsc);
    return st;
}

/* cuDNN's heuristics rank the algorithms; the first that fits the precision
 * and the residual's needs is kept. */
static onnxtl_status *choose_algo(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws) {
    cudnnConvolutionFwdAlgoPerf_t perf[16];
    int count = 0;
    CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(s->dnn, cs->x, cs->w, cs->conv, cs->y, 16, &count, perf));
    for (int i = 0; i < count; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > MAX_WORKSPACE) continue;
        if (s->precision == ONNXTL_PRECISION_FP32 && perf[i].mathType != CUDNN_FMA_MATH) continue; /* true fp32 */
        if (s->precision == ONNXTL_PRECISION_TF32 && perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
            continue; /* no fp16 */
        cs->algo = perf[i].algo;
        CUDNN_TRY(cudnnSetConvolutionMathType(cs->conv, perf[i].mathType));
        *ws = perf[i].memory;
        return NULL;
    }
    return otl_error(ONNXTL_ERR_RUNTIME, "cuDNN offers no convolution algorithm for this layer");
}

static onnxtl_status *prepare_legacy_conv(cuda_state *s, const otl_node *n, const otl_window *win, cuda_step *cs,
                                          size_t *ws) {
    const otl_tinfo *t = s->plan->t, *x = &t[n->in[0]], *w = &t[n->in[1]], *y = &t[n->out[0]];
    OTL_TRY(tensor_nhwc(&cs->x, s->dtype, x->dims));
    OTL_TRY(tensor_nhwc(&cs->y, s->dtype, y->dims));
    int64_t bias_dims[4] = {1, y->dims[1], 1, 1};
    OTL_TRY(tensor_nhwc(&cs->bias, s->dtype, bias_dims));
    CUDNN_TRY(cudnnCreateFilterDescriptor(&cs->w));
    CUDNN_TRY(cudnnSetFilter4dDescriptor(cs->w, dnn_type(s->dtype), CUDNN_TENSOR_NHWC, (int)w->dims[0], (int)w->dims[1],
                                         (int)w->dims[2], (int)w->dims[3]));
    CUDNN_TRY(cudnnCreateConvolutionDescriptor(&cs->conv));
    CUDNN_TRY(cudnnSetConvolution2dDescriptor(cs->conv, (int)win->pad_begin[1], (int)win->pad_begin[2], (int)win->stride[1],
                                              (int)win->stride[2], (int)win->dilation[1], (int)win->dilation[2],
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_TRY(cudnnSetConvolutionGroupCount(cs->conv, (int)n->attrs.group));
    /* fp32: FMA only; tf32: the default, which allows TF32; fp16/bf16: tensor cores. */
    cudnnMathType_t math = s->precision == ONNXTL_PRECISION_FP32   ? CUDNN_FMA_MATH
                           : s->precision == ONNXTL_PRECISION_TF32 ? CUDNN_DEFAULT_MATH
                                                                   : CUDNN_TENSOR_OP_MATH;
    CUDNN_TRY(cudnnSetConvolutionMathType(cs->conv, math));
    CUDNN_TRY(cudnnCreateActivationDescriptor(&cs->act));
    CUDNN_TRY(cudnnSetActivationDescriptor(cs->act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    return choose_algo(s, n, cs, ws);
}

/* Through the graph API where cuDNN accepts the convolution, else the legacy API. */
static onnxtl_status *prepare_conv(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws) {
    const otl_tinfo *t = s->plan->t, *x = &t[n->in[0]], *w = &t[n->in[1]], *y = &t[n->out[0]];
    if (!is_4d(x) || !w->data) return unsupported(n, "only 2-D convolutions with constant weights run");
    otl_window win;
    OTL_TRY(otl_window_init(&n->attrs, 2, x->dims + 2, w->dims + 2, false, &win));
    for (int i = 1; i < 3; i++)
        if (win.pad_begin[i] != win.pad_end[i]) return unsupported(n, "asymmetric padding does not run");
    OTL_TRY(upload_filter(s, w, &cs->weights));
    bool has_bias = n->n_in > 2 && n->in[2] >= 0;
    float *zeros = has_bias ? NULL : calloc((size_t)y->dims[1], sizeof(float));
    if (!has_bias && !zeros) return otl_nomem();
    onnxtl_status *st = upload(s, has_bias ? t[n->in[2]].data : zeros, (size_t)y->dims[1], &cs->bias_data);
    free(zeros);
    OTL_TRY(st);
    if (!s->legacy_only) {
        otl_conv_shape sh = {.io = dnn_type(s->dtype), .precision = s->precision, .residual = n->attrs.fused_add,
                             .relu = n->attrs.fused_relu};
        memcpy(sh.x, x->dims, sizeof sh.x), memcpy(sh.w, w->dims, sizeof sh.w), memcpy(sh.y, y->dims, sizeof sh.y);
        for (int i = 0; i < 2; i++)
            sh.pad[i] = win.pad_begin[i + 1], sh.stride[i] = win.stride[i + 1], sh.dilation[i] = win.dilation[i + 1];
        const otl_conv_args args = {.x = s->ptr[n->in[0]], .w = cs->weights, .bias = cs->bias_data,
                                    .z = sh.residual ? s->ptr[n->in[3]] : NULL, .y = s->ptr[n->out[0]]};
        st = otl_conv_plan(s->tuner, &sh, &args, &cs->tuned);
        if (!st) {
            *ws = otl_conv_workspace(cs->tuned);
            return NULL;
        }
        if (!*s->refusal) snprintf(s->refusal, sizeof s->refusal, "%s", onnxtl_status_message(st));
        onnxtl_status_release(st); /* the legacy API may still run it */
    }
    return prepare_legacy_conv(s, n, &win, cs, ws);
}

static onnxtl_status *prepare_pool(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws) {
    const otl_tinfo *x = &s->plan->t[n->in[0]], *y = &s->plan->t[n->out[0]];
    if (!is_4d(x)) return unsupported(n, "only 2-D pooling runs");
    int kh = (int)x->dims[2], kw = (int)x->dims[3], ph = 0, pw = 0, sh = 1, sw = 1;
    cudnnPoolingMode_t mode = CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    if (n->op != OP_GLOBALAVGPOOL) {
        const otl_attrs *a = &n->attrs;
        otl_window win;
        OTL_TRY(otl_window_init(a, 2, x->dims + 2, a->kernel, a->ceil_mode, &win));
        if (a->ceil_mode || win.dilation[1] != 1 || win.dilation[2] != 1 || win.pad_begin[1] != win.pad_end[1] ||
            win.pad_begin[2] != win.pad_end[2])
            return unsupported(n, "ceil_mode, dilations and asymmetric pads do not run");
        kh = (int)win.kernel[1], kw = (int)win.kernel[2], ph = (int)win.pad_begin[1], pw = (int)win.pad_begin[2];
        sh = (int)win.stride[1], sw = (int)win.stride[2];
        mode = n->op == OP_MAXPOOL ? CUDNN_POOLING_MAX
               : a->count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    }
    CUDNN_TRY(cudnnCreatePoolingDescriptor(&cs->pool));
    CUDNN_TRY(cudnnSetPooling2dDescriptor(cs->pool, mode, CUDNN_NOT_PROPAGATE_NAN, kh, kw, ph, pw, sh, sw));
    OTL_TRY(tensor_nhwc(&cs->x, s->dtype, x->dims));
    return tensor_nhwc(&cs->y, s->dtype, y->dims);
}

static onnxtl_status *prepare_gemm(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws) {
    const otl_tinfo *t = s->plan->t, *b = &t[n->in[1]], *y = &t[n->out[0]];
    if (!b->data) return unsupported(n, "Gemm needs constant weights");
    OTL_TRY(upload(s, b->data, (size_t)otl_tinfo_count(b), &cs->weights));
    if (n->n_in > 2 && n->in[2] >= 0) {
        const otl_tinfo *c = &t[n->in[2]];
        if (!c->data || otl_tinfo_count(c) != y->dims[1] || n->attrs.beta != 1.0f)
            return unsupported(n, "Gemm's C must be a constant row vector with beta 1");
        OTL_TRY(upload(s, c->data, (size_t)y->dims[1], &cs->bias_data));
    }
    return NULL;
}

static onnxtl_status *prepare_softmax(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws) {
    const otl_tinfo *x = &s->plan->t[n->in[0]];
    int64_t axis = n->attrs.axis < 0 ? n->attrs.axis + x->rank : n->attrs.axis;
    if (x->rank != 2 || axis != 1) return unsupported(n, "only Softmax over the last axis of 2-D tensors runs");
    CUDNN_TRY(cudnnCreateTensorDescriptor(&cs->x));
    return cudnnSetTensor4dDescriptor(cs->x, CUDNN_TENSOR_NCHW, dnn_type(s->dtype), (int)x->dims[0], (int)x->dims[1], 1, 1)
               ? otl_error(ONNXTL_ERR_RUNTIME, "cuDNN softmax descriptor failed")
               : NULL;
}

static void free_step(cuda_step *cs) {
    if (cs->x) cudnnDestroyTensorDescriptor(cs->x);
    if (cs->y) cudnnDestroyTensorDescriptor(cs->y);
    if (cs->bias) cudnnDestroyTensorDescriptor(cs->bias);
    if (cs->w) cudnnDestroyFilterDescriptor(cs->w);
    if (cs->conv) cudnnDestroyConvolutionDescriptor(cs->conv);
    if (cs->pool) cudnnDestroyPoolingDescriptor(cs->pool);
    if (cs->act) cudnnDestroyActivationDescriptor(cs->act);
}

static void cuda_release(void *state) {
    cuda_state *s = state;
    if (!s) return;
    if (s->graph) cudaGraphExecDestroy(s->graph);
    for (int i = 0; s->steps && i < s->plan->n_steps; i++) free_step(&s->steps[i]);
    for (int i = 0; i < s->n_owned; i++) cudaFree(s->owned[i]);
    otl_conv_tuner_release(s->tuner);
    if (s->blas) cublasDestroy(s->blas);
    if (s->dnn) cudnnDestroy(s->dnn);
    if (s->stream) cudaStreamDestroy(s->stream);
    free(s->owned);
    free(s->steps);
    free(s->ptr);
    free(s->nhwc);
    free(s);
}

static onnxtl_status *init_handles(cuda_state *s, const otl_backend_config *cfg) {
    OTL_TRY(otl_cuda_use_device(cfg->device_index));
    CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUDNN_TRY(cudnnCreate(&s->dnn));
    CUDNN_TRY(cudnnSetStream(s->dnn, s->stream));
    CUBLAS_TRY(cublasCreate(&s->blas));
    CUBLAS_TRY(cublasSetStream(s->blas, s->stream));
    s->legacy_only = cfg->env.cudnn_legacy;
    return otl_conv_tuner_create(s->dnn, s->stream, cfg->env.tuning_cache, cfg->env.cuda_log_level, cfg->log, &s->tuner);
}

/* Device buffers: the planned arena, inputs, and staging for float32 transfers. */
static onnxtl_status *alloc_buffers(cuda_state *s) {
    const otl_plan *p = s->plan;
    const otl_graph *g = p->g;
    OTL_TRY(dev_alloc(s, p->arena_bytes, &s->arena));
    size_t staging = 0;
    for (int i = 0; i < p->n_inputs; i++) {
        const otl_tinfo *t = &p->t[p->inputs[i]];
        if (t->dtype != ONNXTL_FLOAT) return otl_error(ONNXTL_ERR_UNSUPPORTED, "the CUDA backend takes float32 inputs");
        OTL_TRY(dev_alloc(s, otl_tinfo_bytes(t), &s->ptr[p->inputs[i]]));
        s->nhwc[p->inputs[i]] = is_4d(t);
        staging = otl_tinfo_bytes(t) > staging ? otl_tinfo_bytes(t) : staging;
    }
    for (int i = 0; i < p->n_outputs; i++)
        staging = otl_tinfo_bytes(&p->t[p->outputs[i]]) > staging ? otl_tinfo_bytes(&p->t[p->outputs[i]]) : staging;
    s->staging_bytes = staging;
    OTL_TRY(dev_alloc(s, staging, (void **)&s->staging));
    for (int v = 0; v < g->n_values; v++)
        if (p->offset[v] >= 0) s->ptr[v] = (char *)s->arena + p->offset[v];
    for (int i = 0; i < p->n_outputs; i++)
        if (p->t[p->outputs[i]].data) return otl_error(ONNXTL_ERR_UNSUPPORTED, "constant outputs do not run on CUDA");
    return NULL;
}

/* Engine timing reads the buffers before any real data: noise, not zeros,
 * which can run faster than real data does. */
static onnxtl_status *fill_noise(cuda_state *s) {
    const otl_plan *p = s->plan;
    CUDA_TRY(otl_cuda_fill_noise(s->arena, s->dtype, (int64_t)(p->arena_bytes / s->esize), s->stream));
    for (int i = 0; i < p->n_inputs; i++)
        CUDA_TRY(otl_cuda_fill_noise(s->ptr[p->inputs[i]], ONNXTL_FLOAT, otl_tinfo_count(&p->t[p->inputs[i]]), s->stream));
    CUDA_TRY(cudaStreamSynchronize(s->stream));
    return NULL;
}

/* ONNXTL_CUDA_LOG (1 or more): how each convolution runs, and the time choosing took. */
static void log_convolutions(const cuda_state *s, double seconds) {
    int fused = 0, epilogue = 0, legacy = 0;
    for (int i = 0; i < s->plan->n_steps; i++) {
        const cuda_step *cs = &s->steps[i];
        if (cs->tuned) otl_conv_fused(cs->tuned) ? fused++ : epilogue++;
        else if (cs->conv) legacy++;
    }
    otl_log_line(&s->log, "cuda: %d convolutions fused with their epilogue, %d followed by an epilogue kernel, %d on the "
                          "legacy API; %d timed, %.1f s to prepare",
                 fused, epilogue, legacy, otl_conv_tuner_timed(s->tuner), seconds);
    if (*s->refusal) otl_log_line(&s->log, "cuda: the graph API refused a convolution: %s", s->refusal);
}

/* A residual input that shares the output's buffer is copied first: the
 * convolution overwrites it before the epilogue reads it. */
static onnxtl_status *residual_input(cuda_state *s, const otl_node *n, size_t bytes, const void **z) {
    *z = s->ptr[n->in[3]];
    if (*z != s->ptr[n->out[0]]) return NULL;
    CUDA_TRY(cudaMemcpyAsync(s->residual, *z, bytes, cudaMemcpyDeviceToDevice, s->stream));
    *z = s->residual;
    return NULL;
}

static onnxtl_status *run_conv(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    const float one = 1.0f, zero = 0.0f;
    void *y = s->ptr[n->out[0]];
    const void *x = s->ptr[n->in[0]];
    bool residual = n->attrs.fused_add;
    const size_t bytes = (size_t)otl_tinfo_count(&s->plan->t[n->out[0]]) * s->esize;
    const void *z = y;
    if (residual && (cs->tuned || n->attrs.fused_relu)) OTL_TRY(residual_input(s, n, bytes, &z));
    if (cs->tuned) {
        const otl_conv_args a = {.x = x, .w = cs->weights, .bias = cs->bias_data, .z = residual ? z : NULL, .y = y,
                                 .workspace = s->workspace};
        return otl_conv_run(s->dnn, cs->tuned, &a);
    }
    if (n->attrs.fused_relu) { /* y = relu(conv + z + bias) */
        CUDNN_TRY(cudnnConvolutionBiasActivationForward(s->dnn, &one, cs->x, x, cs->w, cs->weights, cs->conv, cs->algo,
                                                        s->workspace, s->workspace_bytes, residual ? &one : &zero, cs->y, z,
                                                        cs->bias, cs->bias_data, cs->act, cs->y, y));
        return NULL;
    }
    if (residual && s->ptr[n->in[3]] != y) /* y = conv + 1 * y */
        CUDA_TRY(cudaMemcpyAsync(y, s->ptr[n->in[3]], bytes, cudaMemcpyDeviceToDevice, s->stream));
    CUDNN_TRY(cudnnConvolutionForward(s->dnn, &one, cs->x, x, cs->w, cs->weights, cs->conv, cs->algo, s->workspace,
                                      s->workspace_bytes, residual ? &one : &zero, cs->y, y));
    CUDNN_TRY(cudnnAddTensor(s->dnn, &one, cs->bias, cs->bias_data, &one, cs->y, y));
    return NULL;
}

/* Row-major Y[m,n] = A[m,k] op(B) as column-major Y^T = op(B)^T A^T. */
static onnxtl_status *run_gemm(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    const otl_tinfo *a = &s->plan->t[n->in[0]], *y = &s->plan->t[n->out[0]];
    const int m = (int)y->dims[0], nn = (int)y->dims[1], k = (int)a->dims[1];
    const float one = 1.0f, zero = 0.0f;
    bool tb = n->attrs.trans_b;
    cublasComputeType_t compute = s->precision == ONNXTL_PRECISION_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                                  : s->precision == ONNXTL_PRECISION_FP32 ? CUBLAS_COMPUTE_32F_PEDANTIC
                                                                          : CUBLAS_COMPUTE_32F;
    CUBLAS_TRY(cublasGemmEx(s->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, nn, m, k, &one, cs->weights,
                            blas_type(s->dtype), tb ? k : nn, s->ptr[n->in[0]], blas_type(s->dtype), k, &zero,
                            s->ptr[n->out[0]], blas_type(s->dtype), nn, compute, CUBLAS_GEMM_DEFAULT));
    if (cs->bias_data) CUDA_TRY(otl_cuda_add_bias(s->ptr[n->out[0]], cs->bias_data, NULL, s->dtype, m, nn, 0, s->stream));
    return NULL;
}

static onnxtl_status *run_pool(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    const float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnPoolingForward(s->dnn, cs->pool, &one, cs->x, s->ptr[n->in[0]], &zero, cs->y, s->ptr[n->out[0]]));
    return NULL;
}

static onnxtl_status *run_softmax(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    const float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnSoftmaxForward(s->dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &one, cs->x,
                                  s->ptr[n->in[0]], &zero, cs->x, s->ptr[n->out[0]]));
    return NULL;
}

static onnxtl_status *run_relu(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    CUDA_TRY(otl_cuda_relu(s->ptr[n->in[0]], s->ptr[n->out[0]], s->dtype, otl_tinfo_count(&s->plan->t[n->out[0]]),
                           s->stream));
    return NULL;
}

static onnxtl_status *run_add(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    CUDA_TRY(otl_cuda_add(s->ptr[n->in[0]], s->ptr[n->in[1]], s->ptr[n->out[0]], s->dtype,
                          otl_tinfo_count(&s->plan->t[n->out[0]]), n->attrs.fused_relu, s->stream));
    return NULL;
}

/* Channels-last data read in ONNX order is reordered first. */
static onnxtl_status *prepare_copy(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws) {
    const otl_plan *p = s->plan;
    cs->to_nchw = s->nhwc[n->in[0]] && hw(&p->t[n->in[0]]) > 1;
    cs->via_workspace = cs->to_nchw && p->offset[n->in[0]] >= 0 && p->offset[n->in[0]] == p->offset[n->out[0]];
    if (cs->via_workspace) *ws = (size_t)otl_tinfo_count(&p->t[n->out[0]]) * s->esize;
    return NULL;
}

static onnxtl_status *run_copy(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    const otl_tinfo *x = &s->plan->t[n->in[0]], *y = &s->plan->t[n->out[0]];
    const void *in = s->ptr[n->in[0]];
    void *out = s->ptr[n->out[0]];
    if (cs->via_workspace) {
        CUDA_TRY(otl_cuda_nhwc_to_nchw(in, s->workspace, s->dtype, x->dims[0], x->dims[1], hw(x), s->stream));
        CUDA_TRY(cudaMemcpyAsync(out, s->workspace, (size_t)otl_tinfo_count(y) * s->esize, cudaMemcpyDeviceToDevice,
                                 s->stream));
    } else if (cs->to_nchw) {
        CUDA_TRY(otl_cuda_nhwc_to_nchw(in, out, s->dtype, x->dims[0], x->dims[1], hw(x), s->stream));
    } else if (in != out)
        CUDA_TRY(cudaMemcpyAsync(out, in, (size_t)otl_tinfo_count(y) * s->esize, cudaMemcpyDeviceToDevice, s->stream));
    return NULL;
}

/* What each op needs of a node to run here; the session runs the others on
 * the CPU.  Checked before any device work, so that no GPU is needed. */
static bool float_io(const otl_plan *p, const otl_node *n) {
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && !p->t[n->in[k]].data && p->t[n->in[k]].dtype != ONNXTL_FLOAT) return false;
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0 && p->t[n->out[k]].dtype != ONNXTL_FLOAT) return false;
    return true;
}

static bool symmetric_window(const otl_node *n, const otl_tinfo *x, const int64_t *kernel, bool ceil_mode,
                             otl_window *w) {
    onnxtl_status *st = otl_window_init(&n->attrs, 2, x->dims + 2, kernel, ceil_mode, w);
    bool ok = !st;
    onnxtl_status_release(st);
    for (int i = 1; ok && i < 3; i++) ok = w->pad_begin[i] == w->pad_end[i];
    return ok;
}

static bool conv_runs(const otl_plan *p, const otl_node *n) {
    const otl_tinfo *x = &p->t[n->in[0]], *w = &p->t[n->in[1]];
    otl_window win;
    return is_4d(x) && w->data && (n->n_in < 3 || n->in[2] < 0 || p->t[n->in[2]].data) && !n->attrs.fused_act &&
           symmetric_window(n, x, w->dims + 2, false, &win);
}

static bool pool_runs(const otl_plan *p, const otl_node *n) {
    const otl_tinfo *x = &p->t[n->in[0]];
    if (!is_4d(x)) return false;
    if (n->op == OP_GLOBALAVGPOOL) return true;
    otl_window win;
    return !n->attrs.ceil_mode && symmetric_window(n, x, n->attrs.kernel, false, &win) && win.dilation[1] == 1 &&
           win.dilation[2] == 1 && (n->op != OP_MAXPOOL || n->n_out < 2 || n->out[1] < 0);
}

static bool gemm_runs(const otl_plan *p, const otl_node *n) {
    const otl_tinfo *b = &p->t[n->in[1]], *y = &p->t[n->out[0]];
    const bool c = n->n_in > 2 && n->in[2] >= 0;
    return !n->attrs.trans_a && n->attrs.alpha == 1.0f && b->data &&
           (!c || (p->t[n->in[2]].data && otl_tinfo_count(&p->t[n->in[2]]) == y->dims[1] && n->attrs.beta == 1.0f));
}

static bool softmax_runs(const otl_plan *p, const otl_node *n) {
    const otl_tinfo *x = &p->t[n->in[0]];
    return x->rank == 2 && (n->attrs.axis == 1 || n->attrs.axis == -1);
}

static bool relu_runs(const otl_plan *p, const otl_node *n) { return true; }

static bool add_runs(const otl_plan *p, const otl_node *n) {
    const otl_tinfo *t = p->t;
    const int64_t count = otl_tinfo_count(&t[n->out[0]]);
    return !t[n->in[0]].data && !t[n->in[1]].data && otl_tinfo_count(&t[n->in[0]]) == count &&
           otl_tinfo_count(&t[n->in[1]]) == count;
}

/* A 4-D value whose two layouts are the same bytes: [N, C, 1, 1] or [N, 1, H, W]. */
static bool one_layout(const otl_tinfo *t) { return hw(t) == 1 || t->dims[1] == 1; }

/* Every 4-D activation here is channels-last: a copy op that would reshape
 * one into another 4-D shape, or make one out of a tensor of another rank,
 * runs on the CPU instead, and the upload reorders its result. */
static bool copy_runs(const otl_plan *p, const otl_node *n) {
    const otl_tinfo *x = &p->t[n->in[0]], *y = &p->t[n->out[0]];
    if (n->op == OP_DROPOUT && n->n_out > 1 && n->out[1] >= 0) return false;
    if (!is_4d(y) || one_layout(y)) return true;
    return is_4d(x) && !memcmp(x->dims, y->dims, sizeof x->dims[0] * 4);
}

typedef struct {
    bool (*runs)(const otl_plan *p, const otl_node *n);
    onnxtl_status *(*prepare)(cuda_state *s, const otl_node *n, cuda_step *cs, size_t *ws); /* NULL: nothing to do */
    onnxtl_status *(*run)(cuda_state *s, const otl_node *n, const cuda_step *cs);
} cuda_kernel;

/* The CUDA backend's kernel table: one entry per op it runs. */
static const cuda_kernel kernels[OP_COUNT] = {
    [OP_CONV] = {conv_runs, prepare_conv, run_conv},
    [OP_MAXPOOL] = {pool_runs, prepare_pool, run_pool},
    [OP_AVGPOOL] = {pool_runs, prepare_pool, run_pool},
    [OP_GLOBALAVGPOOL] = {pool_runs, prepare_pool, run_pool},
    [OP_GEMM] = {gemm_runs, prepare_gemm, run_gemm},
    [OP_SOFTMAX] = {softmax_runs, prepare_softmax, run_softmax},
    [OP_RELU] = {relu_runs, NULL, run_relu},
    [OP_ADD] = {add_runs, NULL, run_add},
    [OP_FLATTEN] = {copy_runs, prepare_copy, run_copy},
    [OP_RESHAPE] = {copy_runs, prepare_copy, run_copy},
    [OP_SQUEEZE] = {copy_runs, prepare_copy, run_copy},
    [OP_UNSQUEEZE] = {copy_runs, prepare_copy, run_copy},
    [OP_IDENTITY] = {copy_runs, prepare_copy, run_copy},
    [OP_DROPOUT] = {copy_runs, prepare_copy, run_copy},
};

static bool cuda_supports(const otl_plan *p, int step) {
    const otl_node *n = otl_plan_step(p, step);
    return n->op < OP_COUNT && kernels[n->op].runs && float_io(p, n) && kernels[n->op].runs(p, n);
}

static onnxtl_status *prepare_step(cuda_state *s, int i, size_t *ws) {
    const otl_node *n = otl_plan_step(s->plan, i);
    if (!cuda_supports(s->plan, i)) return unsupported(n, "this node does not run");
    return kernels[n->op].prepare ? kernels[n->op].prepare(s, n, &s->steps[i], ws) : NULL;
}

static onnxtl_status *run_step(cuda_state *s, int i) {
    const otl_node *n = otl_plan_step(s->plan, i);
    return kernels[n->op].run(s, n, &s->steps[i]);
}

/* Where a step's 4-D output is channels-last: the copy ops keep their
 * input's layout unless they reorder; every other op here writes it. */
static void plan_output_layout(cuda_state *s, const otl_node *n, const cuda_step *cs) {
    const otl_tinfo *y = &s->plan->t[n->out[0]];
    const bool copy = kernels[n->op].run == run_copy;
    s->nhwc[n->out[0]] = is_4d(y) && (copy ? !cs->to_nchw && s->nhwc[n->in[0]] : true);
}

static onnxtl_status *prepare_steps(cuda_state *s) {
    const otl_plan *p = s->plan;
    size_t ws = 0;
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        size_t w = 0;
        OTL_TRY(prepare_step(s, i, &w));
        ws = w > ws ? w : ws;
        plan_output_layout(s, n, &s->steps[i]);
    }
    s->workspace_bytes = ws;
    size_t residual = 0;
    for (int i = 0; i < p->n_steps; i++) {
        const otl_node *n = otl_plan_step(p, i);
        size_t b = (size_t)otl_tinfo_count(&p->t[n->out[0]]) * s->esize;
        if (n->op == OP_CONV && n->attrs.fused_add && b > residual) residual = b;
    }
    OTL_TRY(dev_alloc(s, residual, &s->residual));
    return dev_alloc(s, ws, &s->workspace);
}

static onnxtl_status *cuda_prepare(const otl_plan *plan, const otl_backend_config *cfg, void **state) {
    cuda_state *s = calloc(1, sizeof *s);
    if (!s) return otl_nomem();
    s->plan = plan;
    s->precision = cfg->precision;
    s->env = cfg->env;
    s->log = cfg->log;
    s->dtype = cfg->precision == ONNXTL_PRECISION_FP16   ? ONNXTL_FLOAT16
               : cfg->precision == ONNXTL_PRECISION_BF16 ? ONNXTL_BFLOAT16
                                                         : ONNXTL_FLOAT;
    s->esize = otl_dtype_size(s->dtype);
    s->ptr = calloc((size_t)plan->g->n_values + 1, sizeof *s->ptr);
    s->nhwc = calloc((size_t)plan->g->n_values + 1, sizeof *s->nhwc);
    s->steps = calloc((size_t)plan->n_steps + 1, sizeof *s->steps);
    onnxtl_status *st = s->ptr && s->nhwc && s->steps ? NULL : otl_nomem();
    if (!st) st = init_handles(s, cfg);
    if (!st) st = alloc_buffers(s);
    if (!st) st = fill_noise(s);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!st) st = prepare_steps(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!st) {
        otl_conv_tuner_save(s->tuner);
        if (s->env.cuda_log) log_convolutions(s, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    }
    /* fp16/bf16 math in cuBLAS; TF32 only when asked */
    if (!st && cfg->precision != ONNXTL_PRECISION_FP32 && cfg->precision != ONNXTL_PRECISION_TF32)
        st = cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH) ? otl_error(ONNXTL_ERR_RUNTIME, "cuBLAS math mode") : NULL;
    if (!st && cfg->precision == ONNXTL_PRECISION_TF32)
        st = cublasSetMathMode(s->blas, CUBLAS_TF32_TENSOR_OP_MATH) ? otl_error(ONNXTL_ERR_RUNTIME, "cuBLAS math mode") : NULL;
    if (st) {
        cuda_release(s);
        return st;
    }
    *state = s;
    return NULL;
}

static onnxtl_status *run_steps(cuda_state *s) {
    for (int i = 0; i < s->plan->n_steps; i++) {
        onnxtl_status *st = run_step(s, i);
        if (st) {
            const otl_node *n = otl_plan_step(s->plan, i);
            return otl_error_wrap(st, "node '%s' (%s)", n->name, otl_op_name(n->op));
        }
    }
    return NULL;
}

/* After one eager run, the steps are captured as a CUDA graph and replayed:
 * one launch instead of hundreds.  Where capture fails, runs stay eager. */
static void try_capture(cuda_state *s) {
    s->graph_tried = true;
    cudaGraph_t g;
    if (cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return;
    onnxtl_status *st = run_steps(s);
    cudaError_t e = cudaStreamEndCapture(s->stream, &g);
    if (!st && e == cudaSuccess && cudaGraphInstantiate(&s->graph, g, 0) != cudaSuccess) s->graph = NULL;
    if (e == cudaSuccess) cudaGraphDestroy(g);
    if (!s->graph && s->env.cuda_log)
        otl_log_line(&s->log, "cuda: capturing a CUDA graph failed (%s); runs stay eager",
                     st ? onnxtl_status_message(st) : cudaGetErrorString(e));
    onnxtl_status_release(st);
    cudaGetLastError(); /* a failed capture leaves an error behind */
}

static onnxtl_status *upload_inputs(cuda_state *s, const void *const *inputs) {
    const otl_plan *p = s->plan;
    for (int i = 0; i < p->n_inputs; i++) {
        const int v = p->inputs[i];
        const otl_tinfo *t = &p->t[v];
        CUDA_TRY(cudaMemcpyAsync(s->staging, inputs[i], otl_tinfo_bytes(t), cudaMemcpyHostToDevice, s->stream));
        const bool nhwc = s->nhwc[v];
        CUDA_TRY(otl_cuda_from_f32(s->staging, s->ptr[v], s->dtype, nhwc ? t->dims[0] : 1, nhwc ? t->dims[1] : 1,
                                   nhwc ? hw(t) : otl_tinfo_count(t), nhwc, s->stream));
    }
    return NULL;
}

static onnxtl_status *download_outputs(cuda_state *s, void *const *outputs) {
    const otl_plan *p = s->plan;
    for (int i = 0; i < p->n_outputs; i++) {
        int v = p->outputs[i];
        const otl_tinfo *t = &p->t[v];
        bool nhwc = s->nhwc[v] && hw(t) > 1;
        CUDA_TRY(otl_cuda_to_f32(s->ptr[v], s->staging, s->dtype, nhwc ? t->dims[0] : 1, nhwc ? t->dims[1] : 1,
                                 nhwc ? hw(t) : otl_tinfo_count(t), nhwc, s->stream));
        CUDA_TRY(cudaMemcpyAsync(outputs[i], s->staging, otl_tinfo_bytes(t), cudaMemcpyDeviceToHost, s->stream));
        CUDA_TRY(cudaStreamSynchronize(s->stream));
    }
    return NULL;
}

static onnxtl_status *cuda_run(void *state, const void *const *inputs, void *const *outputs) {
    cuda_state *s = state;
    OTL_TRY(upload_inputs(s, inputs));
    if (s->graph) CUDA_TRY(cudaGraphLaunch(s->graph, s->stream));
    else OTL_TRY(run_steps(s));
    OTL_TRY(download_outputs(s, outputs));
    if (!s->graph_tried) try_capture(s);
    return NULL;
}

static onnxtl_status *cuda_host_alloc(const otl_backend_config *cfg, size_t bytes, void **out) {
    CUDA_TRY(cudaSetDevice(cfg->device_index));
    cudaError_t e = cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation)
        return otl_error(ONNXTL_ERR_NOMEM, "cannot pin %.1f MiB of host memory; try a smaller --batch",
                         (double)bytes / 1048576.0);
    CUDA_TRY(e);
    return NULL;
}

static void cuda_host_free(void *p) { cudaFreeHost(p); }

const otl_backend otl_backend_cuda = {.name = "cuda",
                                      .supports = cuda_supports,
                                      .prepare = cuda_prepare,
                                      .run = cuda_run,
                                      .release = cuda_release,
                                      .host_alloc = cuda_host_alloc,
                                      .host_free = cuda_host_free};
