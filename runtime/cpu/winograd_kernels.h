/* The kernels of onnxtl's Winograd for one instruction set, included by
 * winograd.c once per set: it defines TARGET (the target attribute), KERNEL
 * (the suffix of each name), VEC (the vector type, LANES floats) and the
 * operations on it (VLOAD, VSTORE, VSET1, VZERO, VADD, VSUB, VMAX, VFMADD:
 * a * b + c, VFNMADD: c - a * b). */

/* o[k * os] = (B^T x)[k] for the six vectors x[k * s] (B^T in winograd.c). */
static inline TARGET void KERNEL(input_points)(const VEC *x, int s, VEC *o, int os) {
    const VEC half = VSET1(0.5f), three_halves = VSET1(1.5f), two = VSET1(2), five_halves = VSET1(2.5f);
    const VEC x0 = x[0], x1 = x[s], x2 = x[2 * s], x3 = x[3 * s], x4 = x[4 * s], x5 = x[5 * s];
    const VEC d31 = VSUB(x3, x1), d42 = VSUB(x4, x2);
    o[0] = VFNMADD(two, x2, VFMADD(three_halves, d31, VADD(x0, x4)));
    o[os] = VFMADD(five_halves, x3, VFMADD(half, x2, VSUB(x4, x1)));
    o[2 * os] = VFMADD(half, x3, VFNMADD(five_halves, x2, VADD(x1, x4)));
    o[3 * os] = VFMADD(two, d31, d42);
    o[4 * os] = VFNMADD(half, d31, d42);
    o[5 * os] = VFNMADD(two, x3, VFMADD(three_halves, d42, VADD(x1, x5)));
}

/* o[k * os] = (A^T m)[k], k < 4, for the six vectors m[k * s]. */
static inline TARGET void KERNEL(output_points)(const VEC *m, int s, VEC *o, int os) {
    const VEC eighth = VSET1(0.125f), quarter = VSET1(0.25f), half = VSET1(0.5f);
    const VEC two = VSET1(2), four = VSET1(4), eight = VSET1(8);
    const VEC s12 = VADD(m[s], m[2 * s]), d12 = VSUB(m[s], m[2 * s]);
    o[0] = VADD(VADD(m[0], s12), VADD(m[3 * s], m[4 * s]));
    o[os] = VFNMADD(two, m[4 * s], VFMADD(half, m[3 * s], d12));
    o[2 * os] = VFMADD(four, m[4 * s], VFMADD(quarter, m[3 * s], s12));
    o[3 * os] = VADD(VFNMADD(eight, m[4 * s], VFMADD(eighth, m[3 * s], d12)), m[5 * s]);
}

/* B^T d B of one input tile, every channel, into row v of each point's V
 * (points `stride` floats apart); the padding reads as zeros. */
static TARGET void KERNEL(transform_input)(const otl_winograd *w, const float *src, int64_t tile, float *v,
                                           int64_t stride) {
    int64_t image, y0, x0;
    tile_origin(w, tile, &image, &y0, &x0);
    y0 -= w->top, x0 -= w->left;
    const float *in = src + image * w->h * w->w * w->c;
    for (int64_t c = 0; c < w->c; c += LANES) {
        VEC d[POINTS], t[POINTS];
        for (int i = 0; i < SIDE; i++)
            for (int j = 0; j < SIDE; j++) {
                const int64_t y = y0 + i, x = x0 + j;
                const bool inside = y >= 0 && y < w->h && x >= 0 && x < w->w;
                d[i * SIDE + j] = inside ? VLOAD(in + (y * w->w + x) * w->c + c) : VZERO();
            }
        for (int j = 0; j < SIDE; j++) KERNEL(input_points)(d + j, SIDE, t + j, SIDE);
        for (int i = 0; i < SIDE; i++) KERNEL(input_points)(t + i * SIDE, 1, d + i * SIDE, 1);
        for (int k = 0; k < POINTS; k++) VSTORE(v + k * stride + c, d[k]);
    }
}

/* c[ROWS][2 * LANES] (rows ldc apart) = a[ROWS][k] (rows lda apart) times b[k][2 * LANES]. */
static TARGET void KERNEL(multiply_rows)(const float *a, int64_t lda, const float *b, int64_t k, float *c,
                                         int64_t ldc) {
    VEC c00 = VZERO(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    VEC c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t p = 0; p < k; p++) {
        const VEC b0 = VLOAD(b + p * 2 * LANES), b1 = VLOAD(b + p * 2 * LANES + LANES);
#define ROW(r)                                                                                                        \
    do {                                                                                                              \
        const VEC ar = VSET1(a[(r) * lda + p]);                                                                       \
        c##r##0 = VFMADD(ar, b0, c##r##0);                                                                            \
        c##r##1 = VFMADD(ar, b1, c##r##1);                                                                            \
    } while (0)
        ROW(0);
        ROW(1);
        ROW(2);
        ROW(3);
        ROW(4);
        ROW(5);
#undef ROW
    }
    const VEC sums[ROWS][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < ROWS; r++) {
        VSTORE(c + r * ldc, sums[r][0]);
        VSTORE(c + r * ldc + LANES, sums[r][1]);
    }
}

/* A^T M A of one tile's products, with the bias, the residual and the ReLU,
 * into the NHWC output (the part of the tile inside it). */
static TARGET void KERNEL(transform_output)(const otl_winograd *w, const float *m, int64_t stride, int64_t tile,
                                            const float *skip, float *dst) {
    int64_t image, y0, x0;
    tile_origin(w, tile, &image, &y0, &x0);
    const int64_t rows = w->oh - y0 < TILE ? w->oh - y0 : TILE, cols = w->ow - x0 < TILE ? w->ow - x0 : TILE;
    const int64_t first = (image * w->oh + y0) * w->ow + x0;
    for (int64_t c = 0; c < w->oc; c += LANES) {
        VEC p[POINTS], t[TILE * SIDE], y[TILE * TILE];
        for (int k = 0; k < POINTS; k++) p[k] = VLOAD(m + k * stride + c);
        for (int j = 0; j < SIDE; j++) KERNEL(output_points)(p + j, SIDE, t + j, SIDE);
        for (int i = 0; i < TILE; i++) KERNEL(output_points)(t + i * SIDE, 1, y + i * TILE, 1);
        const VEC bias = VLOAD(w->bias + c);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                const int64_t at = (first + i * w->ow + j) * w->oc + c;
                VEC out = VADD(y[i * TILE + j], bias);
                if (skip) out = VADD(out, VLOAD(skip + at));
                if (w->relu) out = VMAX(out, VZERO());
                VSTORE(dst + at, out);
            }
    }
}

static const winograd_isa KERNEL(winograd) = {KERNEL(transform_input), KERNEL(multiply_rows),
                                              KERNEL(transform_output), 2 * LANES};
