#include "atomic_file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void release(otl_atomic_file *a) {
    free(a->path);
    free(a->tmp);
    *a = (otl_atomic_file){0};
}

onnxtl_status *otl_atomic_open(const char *path, otl_atomic_file *a) {
    *a = (otl_atomic_file){0};
    const size_t n = strlen(path);
    a->path = strdup(path);
    a->tmp = malloc(n + 5);
    if (!a->path || !a->tmp) {
        release(a);
        return otl_nomem();
    }
    memcpy(a->tmp, path, n);
    memcpy(a->tmp + n, ".tmp", 5);
    if (!(a->f = fopen(a->tmp, "wb"))) {
        onnxtl_status *st = otl_error(ONNXTL_ERR_IO, "%s: cannot create: %s", a->tmp, strerror(errno));
        release(a);
        return st;
    }
    return NULL;
}

onnxtl_status *otl_atomic_write(otl_atomic_file *a, const void *data, size_t bytes) {
    if (bytes && fwrite(data, 1, bytes, a->f) != bytes)
        return otl_error(ONNXTL_ERR_IO, "%s: write failed: %s", a->tmp, strerror(errno));
    return NULL;
}

void otl_atomic_discard(otl_atomic_file *a) {
    if (a->f) {
        fclose(a->f);
        unlink(a->tmp);
    }
    release(a);
}

onnxtl_status *otl_atomic_close(otl_atomic_file *a, onnxtl_status *st) {
    if (st || !a->f) {
        otl_atomic_discard(a);
        return st;
    }
    const bool ok = fflush(a->f) == 0 && !ferror(a->f) && fsync(fileno(a->f)) == 0;
    const int e = errno;
    const bool closed = fclose(a->f) == 0;
    a->f = NULL;
    if (!ok || !closed) st = otl_error(ONNXTL_ERR_IO, "%s: write failed: %s", a->tmp, strerror(ok ? errno : e));
    if (!st && rename(a->tmp, a->path) != 0)
        st = otl_error(ONNXTL_ERR_IO, "%s: cannot rename into place: %s", a->path, strerror(errno));
    if (st) unlink(a->tmp);
    release(a);
    return st;
}
