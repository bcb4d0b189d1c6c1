/* splitmix64's finaliser: a 64-bit hash in which every output bit depends on
 * every input bit.  The head trainer's random stream and the network
 * trainer's counter-based dropout masks both draw from it. */
#ifndef OTL_MIX64_H
#define OTL_MIX64_H

#include <stdint.h>

static inline uint64_t otl_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
