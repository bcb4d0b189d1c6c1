/* splitmix64's finaliser: a 64-bit hash in which every output bit depends on
 * every input bit.  The head trainer's random stream and the network
 * trainers' counter-based dropout masks (dropout.h) draw from it. */
#ifndef OTL_MIX64_H
#define OTL_MIX64_H

#include <stdint.h>

#ifdef __CUDACC__
#define OTL_HOST_DEVICE __host__ __device__
#else
#define OTL_HOST_DEVICE
#endif

OTL_HOST_DEVICE static inline uint64_t otl_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
