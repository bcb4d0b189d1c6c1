/* torch.optim's parameter updates, in float as torch computes them, over one
 * flat block of parameters: the head trainer's and the network trainer's. */
#ifndef OTL_OPTIM_H
#define OTL_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* torch.optim.Adam (betas 0.9, 0.999, eps 1e-8; weight decay added to the
 * gradient), or with decoupled torch.optim.AdamW (the parameters shrink by
 * lr * weight_decay first), step counting from 1; m and v are its moments. */
void otl_adam_update(float lr, float weight_decay, bool decoupled, int64_t step, float *p, const float *g, float *m,
                     float *v, size_t n);
/* torch.optim.SGD: the first step seeds the momentum buffer buf. */
void otl_sgd_update(float lr, float momentum, float weight_decay, bool first, float *p, const float *g, float *buf,
                    size_t n);

#endif
