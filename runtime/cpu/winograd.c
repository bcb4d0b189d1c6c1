/* Winograd F(4x4, 3x3) (Lavin and Gray, 2015): each 4x4 tile of output is
 * Y = A^T [(G g G^T) . (B^T d B)] A over the 6x6 input tile d, so that a
 * tile's 144 multiplies per channel pair become 36: one matrix product per
 * point of the 6x6 transform, over channels, between the transformed input
 * tiles V (tiles x C) and the transformed weights U (C x OC).
 *
 * The transforms interpolate at 0, 1, -1, 1/2, -2 and infinity rather than
 * Lavin's 0, +-1, +-2: with smaller entries (at most 2.5 in B^T, where
 * Lavin's has 5) they cut the largest error against ONNX Runtime 2 to 3.5
 * times here, for two more operations per six vectors in each transform
 * (on choosing the points: Barabasz et al., 2020):
 *
 *   B^T = [1 -3/2   -2  3/2    1 0]   G = [    1     0     0]   A^T = [1  1  1   1  1 0]
 *         [0   -1  1/2  5/2    1 0]       [  1/3   1/3   1/3]         [0  1 -1 1/2 -2 0]
 *         [0    1 -5/2  1/2    1 0]       [ -1/3   1/3  -1/3]         [0  1  1 1/4  4 0]
 *         [0   -2   -1    2    1 0]       [-16/15 -8/15 -4/15]        [0  1 -1 1/8 -8 1]
 *         [0  1/2   -1 -1/2    1 0]       [ 1/15 -2/15  4/15]
 *         [0    1 -3/2   -2  3/2 1]       [    0     0     1]
 *
 * A run goes through the batch's tiles a chunk at a time, sized so that a
 * point's V stays in the L2 cache while every panel of U is
 * multiplied by it: transform the chunk's input tiles, multiply the 36
 * points, transform the products back to NHWC with the bias, the residual
 * and the ReLU.  Every loop runs over a vector of channels at a time: 8 in
 * AVX2, 16 in AVX-512 (winograd_kernels.h, compiled for each). */
#include "winograd.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"

enum {
    TILE = 4,    /* output tile side */
    SIDE = 6,    /* input tile side: TILE + 3 - 1 */
    POINTS = 36, /* SIDE * SIDE */
    ROWS = 6     /* tiles per micro-kernel call */
};

/* Floats of one point's V in a chunk: 256 KiB, what an L2 cache of 512 KiB
 * or more holds beside the panel of U being multiplied. */
#define CHUNK_FLOATS (64 * 1024)

/* The kernels of one instruction set (winograd_kernels.h). */
typedef struct {
    void (*transform_input)(const otl_winograd *w, const float *src, int64_t tile, float *v, int64_t stride);
    void (*multiply_rows)(const float *a, int64_t lda, const float *b, int64_t k, float *c, int64_t ldc);
    void (*transform_output)(const otl_winograd *w, const float *m, int64_t stride, int64_t tile,
                             const float *skip, float *dst);
    int cols; /* output channels per micro-kernel call, and per panel of U: two vectors */
} winograd_isa;

struct otl_winograd {
    const winograd_isa *isa;
    int64_t n, h, w, c, oc;          /* the NHWC input, and the output channels */
    int64_t oh, ow, top, left;       /* the output size, and the input's leading padding */
    int64_t tiles_h, tiles_w, tiles; /* output tiles down, across, and in the batch */
    int64_t chunk;                   /* tiles per pass, a multiple of ROWS */
    float *u;                        /* transformed weights, [POINTS][oc / cols][c][cols] */
    float *bias;                     /* [oc], zeros without one */
    bool relu;
};

/* Input channels and output channels must be multiples of these. */
static int64_t lanes_of(otl_winograd_isa isa) { return isa == OTL_WINOGRAD_AVX512 ? 16 : 8; }

bool otl_winograd_supported(const otl_node *n, const otl_tinfo *t, otl_winograd_isa isa) {
    const otl_tinfo *x = &t[n->in[0]], *w = &t[n->in[1]];
    const otl_attrs *a = &n->attrs;
    if (n->op != OP_CONV || x->rank != 4 || w->rank != 4 || !w->data || a->group != 1 || a->fused_act != FUSED_NONE)
        return false;
    if (n->n_in > 2 && n->in[2] >= 0 && !t[n->in[2]].data) return false;
    otl_window win;
    onnxtl_status *st = otl_window_init(a, 2, x->dims + 2, w->dims + 2, false, &win);
    if (st) {
        onnxtl_status_release(st);
        return false;
    }
    const int64_t lanes = lanes_of(isa);
    return w->dims[2] == 3 && w->dims[3] == 3 && w->dims[1] % lanes == 0 && w->dims[0] % (2 * lanes) == 0 &&
           win.stride[1] == 1 && win.stride[2] == 1 && win.dilation[1] == 1 && win.dilation[2] == 1;
}

/* Where tile `tile` starts: its image, and its first output row and column. */
static void tile_origin(const otl_winograd *w, int64_t tile, int64_t *image, int64_t *y, int64_t *x) {
    const int64_t per_image = w->tiles_h * w->tiles_w, r = tile % per_image;
    *image = tile / per_image, *y = r / w->tiles_w * TILE, *x = r % w->tiles_w * TILE;
}

#define TARGET __attribute__((target("avx2,fma")))
#define KERNEL(name) name##_avx2
#define VEC __m256
#define LANES 8
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VZERO _mm256_setzero_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMAX _mm256_max_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#include "winograd_kernels.h"
#undef TARGET
#undef KERNEL
#undef VEC
#undef LANES
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VZERO
#undef VADD
#undef VSUB
#undef VMAX
#undef VFMADD
#undef VFNMADD

#define TARGET __attribute__((target("avx512f")))
#define KERNEL(name) name##_avx512
#define VEC __m512
#define LANES 16
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VSET1 _mm512_set1_ps
#define VZERO _mm512_setzero_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMAX _mm512_max_ps
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#include "winograd_kernels.h"

/* G g G^T for one 3x3 kernel g, in double. */
static void transform_kernel(const float *g, double u[SIDE][SIDE]) {
    static const double G[SIDE][3] = {{1, 0, 0},
                                      {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                      {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                      {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                      {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                      {0, 0, 1}};
    double gg[SIDE][3];
    for (int i = 0; i < SIDE; i++)
        for (int j = 0; j < 3; j++) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
    for (int i = 0; i < SIDE; i++)
        for (int j = 0; j < SIDE; j++) u[i][j] = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
}

/* ONNX's OIHW weights into U, each point's in panels of `cols` output channels. */
static void transform_weights(otl_winograd *w, const float *weights) {
    const int64_t cols = w->isa->cols, panels = w->oc / cols;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < w->oc; o++)
        for (int64_t i = 0; i < w->c; i++) {
            double u[SIDE][SIDE];
            transform_kernel(weights + (o * w->c + i) * 9, u);
            for (int k = 0; k < POINTS; k++)
                w->u[((k * panels + o / cols) * w->c + i) * cols + o % cols] = (float)u[k / SIDE][k % SIDE];
        }
}

static onnxtl_status *init_geometry(otl_winograd *w, const otl_node *n, const otl_tinfo *t) {
    const otl_tinfo *x = &t[n->in[0]], *wt = &t[n->in[1]];
    otl_window win;
    OTL_TRY(otl_window_init(&n->attrs, 2, x->dims + 2, wt->dims + 2, false, &win));
    w->n = x->dims[0], w->c = x->dims[1], w->h = x->dims[2], w->w = x->dims[3], w->oc = wt->dims[0];
    w->oh = win.out[1], w->ow = win.out[2], w->top = win.pad_begin[1], w->left = win.pad_begin[2];
    w->tiles_h = (w->oh + TILE - 1) / TILE, w->tiles_w = (w->ow + TILE - 1) / TILE;
    if (!otl_mul_i64(w->n, w->tiles_h * w->tiles_w, &w->tiles))
        return otl_error(ONNXTL_ERR_ARG, "node '%s': too many Winograd tiles", n->name);
    const int64_t per_chunk = CHUNK_FLOATS / w->c / ROWS * ROWS, all = (w->tiles + ROWS - 1) / ROWS * ROWS;
    w->chunk = per_chunk < ROWS ? ROWS : per_chunk < all ? per_chunk : all;
    w->relu = n->attrs.fused_relu;
    return NULL;
}

onnxtl_status *otl_winograd_create(const otl_node *n, const otl_tinfo *t, otl_winograd_isa isa, otl_winograd **out) {
    otl_winograd *w = calloc(1, sizeof *w);
    if (!w) return otl_nomem();
    w->isa = isa == OTL_WINOGRAD_AVX512 ? &winograd_avx512 : &winograd_avx2;
    onnxtl_status *st = init_geometry(w, n, t);
    size_t floats, bytes = 0;
    if (!st && !(otl_mul_size((size_t)w->c, (size_t)w->oc, &floats) && otl_mul_size(floats, POINTS, &floats) &&
                 otl_mul_size(floats, sizeof(float), &bytes)))
        st = otl_error(ONNXTL_ERR_ARG, "node '%s': its Winograd weights overflow memory sizes", n->name);
    if (!st && (!(w->u = aligned_alloc(64, (bytes + 63) & ~(size_t)63)) ||
                !(w->bias = calloc((size_t)w->oc, sizeof *w->bias))))
        st = otl_nomem();
    if (st) {
        otl_winograd_release(w);
        return st;
    }
    transform_weights(w, t[n->in[1]].data);
    if (n->n_in > 2 && n->in[2] >= 0) memcpy(w->bias, t[n->in[2]].data, sizeof(float) * (size_t)w->oc);
    *out = w;
    return NULL;
}

size_t otl_winograd_scratch_bytes(const otl_winograd *w) {
    return sizeof(float) * POINTS * (size_t)w->chunk * (size_t)(w->c + w->oc);
}

/* One point's product for one panel of output channels, over `rows` tiles. */
static void multiply_point(const otl_winograd *w, const float *v, float *m, int64_t item, int64_t rows) {
    const int64_t cols = w->isa->cols, panels = w->oc / cols, k = item / panels, panel = item % panels;
    const float *a = v + k * w->chunk * w->c, *b = w->u + (k * panels + panel) * w->c * cols;
    float *c = m + k * w->chunk * w->oc + panel * cols;
    for (int64_t r = 0; r < rows; r += ROWS)
        w->isa->multiply_rows(a + r * w->c, w->c, b, w->c, c + r * w->oc, w->oc);
}

void otl_winograd_run(const otl_winograd *w, const float *src, const float *skip, float *dst, void *scratch) {
    float *v = scratch, *m = v + POINTS * w->chunk * w->c;
    const int64_t vstride = w->chunk * w->c, mstride = w->chunk * w->oc, items = POINTS * (w->oc / w->isa->cols);
    for (int64_t first = 0; first < w->tiles; first += w->chunk) {
        const int64_t count = w->tiles - first < w->chunk ? w->tiles - first : w->chunk;
        const int64_t rows = (count + ROWS - 1) / ROWS * ROWS; /* the rows past count multiply zeros */
#pragma omp parallel
        {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                if (r < count) w->isa->transform_input(w, src, first + r, v + r * w->c, vstride);
                else
                    for (int k = 0; k < POINTS; k++) memset(v + k * vstride + r * w->c, 0, sizeof(float) * w->c);
            }
#pragma omp for schedule(static)
            for (int64_t item = 0; item < items; item++) multiply_point(w, v, m, item, rows);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < count; r++) w->isa->transform_output(w, m + r * w->oc, mstride, first + r, skip, dst);
        }
    }
}

void otl_winograd_release(otl_winograd *w) {
    if (!w) return;
    free(w->u);
    free(w->bias);
    free(w);
}
