#include "optim.h"

#include <math.h>

void otl_adam_update(float lr, float weight_decay, bool decoupled, int64_t step, float *p, const float *g, float *m,
                     float *v, size_t n) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const double bc1 = 1.0 - pow(0.9, (double)step), bc2 = 1.0 - pow(0.999, (double)step);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float one_b1 = (float)(1.0 - 0.9), one_b2 = (float)(1.0 - 0.999);
    const float wd = decoupled ? 0.0f : weight_decay, shrink = (float)(1.0 - (double)lr * weight_decay);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        if (decoupled) p[i] *= shrink;
        float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        m[i] = m[i] * b1 + one_b1 * gi;
        v[i] = v[i] * b2 + one_b2 * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] + -step_size * (m[i] / denom);
    }
}

void otl_sgd_update(float lr, float momentum, float weight_decay, bool first, float *p, const float *g, float *buf,
                    size_t n) {
    const float wd = weight_decay;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        if (momentum != 0.0f) {
            buf[i] = first ? d : buf[i] * momentum + d;
            d = buf[i];
        }
        p[i] = p[i] + -lr * d;
    }
}
