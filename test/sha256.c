/* Prints the SHA-256 of each file twice, with the portable code and with the
 * CPU's SHA extensions (the same code where the CPU lacks them), for
 * test/hash_parity.py to check against Python's hashlib.
 * usage: test_sha256 FILE... */
#include <stdio.h>

#include "hash.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char portable[65], fast[65];
        onnxtl_status *st = otl_sha256_file_with(argv[i], portable, false);
        if (!st) st = otl_sha256_file_with(argv[i], fast, true);
        if (st) {
            fprintf(stderr, "%s\n", onnxtl_status_message(st));
            onnxtl_status_release(st);
            return 1;
        }
        printf("%s %s %s\n", portable, fast, argv[i]);
    }
    return 0;
}
