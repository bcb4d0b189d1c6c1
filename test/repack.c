/* Parses a model the way the loader does (the skeleton without payloads, the
 * payloads attached where they lie) and packs it again with protobuf-c, for
 * loader_tests.py to compare with the original message.
 * usage: test_repack IN.onnx OUT.onnx */
#include <stdio.h>
#include <stdlib.h>

#include "proto.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.onnx OUT.onnx\n", argv[0]);
        return 2;
    }
    otl_proto_model m;
    onnxtl_status *st = otl_proto_read_model(argv[1], &m);
    if (st) {
        fprintf(stderr, "%s\n", onnxtl_status_message(st));
        onnxtl_status_release(st);
        return 1;
    }
    const size_t n = onnx__model_proto__get_packed_size(m.proto);
    uint8_t *buf = malloc(n ? n : 1);
    FILE *f = buf ? fopen(argv[2], "wb") : NULL;
    const int ok = f && onnx__model_proto__pack(m.proto, buf) == n && fwrite(buf, 1, n, f) == n;
    if (f && fclose(f) != 0) fprintf(stderr, "%s: write failed\n", argv[2]);
    free(buf);
    otl_proto_model_release(&m);
    return ok ? 0 : 1;
}
