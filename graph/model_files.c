#include "model_files.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

onnxtl_status *otl_map_file(const char *path, otl_mapped_file *out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    onnxtl_status *st = NULL;
    if (fstat(fd, &sb) != 0) st = otl_error(ONNXTL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = otl_error(ONNXTL_ERR_IO, "%s: not a regular file", path);
    else if (sb.st_size == 0) st = otl_error(ONNXTL_ERR_FORMAT, "%s: file is empty", path);
    else if ((uint64_t)sb.st_size > SIZE_MAX) st = otl_error(ONNXTL_ERR_IO, "%s: too large to map", path);
    void *bytes = MAP_FAILED;
    if (!st) {
        bytes = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (bytes == MAP_FAILED) st = otl_error(ONNXTL_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    close(fd);
    if (st) return st;
    *out = (otl_mapped_file){.bytes = bytes, .size = (size_t)sb.st_size, .path = strdup(path)};
    if (!out->path) {
        otl_unmap_file(out);
        return otl_nomem();
    }
    return NULL;
}

void otl_unmap_file(otl_mapped_file *f) {
    if (f->bytes) munmap(f->bytes, f->size);
    free(f->path);
    *f = (otl_mapped_file){0};
}

void otl_mapped_forget(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1),
                    hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice only: nothing to do when refused */
}

onnxtl_status *otl_model_files_open(otl_model_files *mf, const char *path) {
    *mf = (otl_model_files){0};
    char *copy = strdup(path);
    if (!copy) return otl_nomem();
    mf->dir = strdup(dirname(copy));
    free(copy);
    if (!mf->dir) return otl_nomem();
    return otl_map_file(path, &mf->model);
}

/* The real path of location inside dir, refused when it leads outside. */
static onnxtl_status *resolve_inside(const char *dir, const char *tensor, const char *location, char *resolved) {
    if (!dir)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': a model loaded from memory cannot use external data ('%s')",
                         tensor, location);
    if (location[0] == '/' || strstr(location, ".."))
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data location '%s' must be a relative path inside the model's folder",
                         tensor, location);
    char dir_real[PATH_MAX], joined[PATH_MAX];
    if (!realpath(dir, dir_real))
        return otl_error(ONNXTL_ERR_IO, "cannot resolve model folder '%s': %s", dir, strerror(errno));
    if (snprintf(joined, sizeof joined, "%s/%s", dir_real, location) >= (int)sizeof joined)
        return otl_error(ONNXTL_ERR_MODEL, "tensor '%s': external data path too long", tensor);
    if (!realpath(joined, resolved))
        return otl_error(ONNXTL_ERR_IO, "tensor '%s': external data file '%s': %s", tensor, location,
                         strerror(errno));
    size_t dl = strlen(dir_real);
    if (strncmp(resolved, dir_real, dl) != 0 || resolved[dl] != '/')
        return otl_error(ONNXTL_ERR_MODEL,
                         "tensor '%s': external data '%s' leads outside the model's folder (through a symlink)",
                         tensor, location);
    return NULL;
}

onnxtl_status *otl_model_files_external(otl_model_files *mf, const char *tensor, const char *location,
                                        const otl_mapped_file **out) {
    char resolved[PATH_MAX];
    OTL_TRY(resolve_inside(mf->dir, tensor, location, resolved));
    for (int i = 0; i < mf->n_external; i++)
        if (!strcmp(mf->external[i].path, resolved)) return *out = &mf->external[i], NULL;
    if (mf->n_external == mf->cap_external) {
        int cap = mf->cap_external ? 2 * mf->cap_external : 4;
        otl_mapped_file *grown = realloc(mf->external, (size_t)cap * sizeof *grown);
        if (!grown) return otl_nomem();
        mf->external = grown;
        mf->cap_external = cap;
    }
    onnxtl_status *st = otl_map_file(resolved, &mf->external[mf->n_external]);
    if (st) return otl_error_wrap(st, "tensor '%s': external data '%s'", tensor, location);
    *out = &mf->external[mf->n_external++];
    return NULL;
}

static bool inside(const otl_mapped_file *f, const void *p, size_t n) {
    const uintptr_t a = (uintptr_t)p, lo = (uintptr_t)f->bytes;
    return f->bytes && a >= lo && a - lo <= f->size && n <= f->size - (a - lo);
}

bool otl_model_files_hold(const otl_model_files *mf, const void *p, size_t n) {
    if (inside(&mf->model, p, n)) return true;
    for (int i = 0; i < mf->n_external; i++)
        if (inside(&mf->external[i], p, n)) return true;
    return false;
}

void otl_model_files_release(otl_model_files *mf) {
    for (int i = 0; i < mf->n_external; i++) otl_unmap_file(&mf->external[i]);
    free(mf->external);
    otl_unmap_file(&mf->model);
    free(mf->dir);
    *mf = (otl_model_files){0};
}
