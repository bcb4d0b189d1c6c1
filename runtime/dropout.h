/* Inverted dropout's draws as a hash of where a value is (seed, step, site,
 * index), not of the order threads or GPU blocks draw in: the CPU and the
 * CUDA trainers keep and drop the same values, and a resumed run draws what
 * an uninterrupted one does.  A site is a head's hidden layer or a network's
 * Dropout node. */
#ifndef OTL_DROPOUT_H
#define OTL_DROPOUT_H

#include <stdbool.h>

#include "mix64.h"

typedef struct {
    float ratio; /* the probability of dropping a value, in [0, 1) */
    uint64_t seed, step;
} otl_dropout;

/* The key of one site's draws in one step. */
static inline uint64_t otl_dropout_key(uint64_t seed, uint64_t step, uint64_t site) {
    return otl_mix64(seed ^ otl_mix64(step * 0x9e3779b97f4a7c15ull + site));
}

/* Whether value `index` of a site survives: with probability 1 - ratio. */
OTL_HOST_DEVICE static inline bool otl_dropout_keeps(uint64_t key, uint64_t index, float ratio) {
    return (double)(otl_mix64(key + index) >> 11) * 0x1.0p-53 >= ratio;
}

/* What a kept value is multiplied by. */
OTL_HOST_DEVICE static inline float otl_dropout_scale(float ratio) { return 1.0f / (1.0f - ratio); }

#endif
