/* SHA-256 of files (to tie features to the exact model) and CRC-32C of rows. */
#ifndef OTL_HASH_H
#define OTL_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxtl.h"

/* Writes the lowercase hex digest (64 characters and a NUL) of the file at
 * path, with the CPU's SHA extensions where it has them. */
onnxtl_status *otl_sha256_file(const char *path, char hex[65]);
/* The same, choosing the implementation (sha_ni is ignored on CPUs without it): for tests. */
onnxtl_status *otl_sha256_file_with(const char *path, char hex[65], bool sha_ni);

/* CRC-32C (Castagnoli), with SSE4.2's crc32 instruction. */
uint32_t otl_crc32c(const void *data, size_t len);

#endif
