/* The dataset scanner over generated folder trees.  The input is a list of
 * entries separated by NUL bytes, each a kind ('d' folder, 'f' file, 'l' a
 * symlink to the root, making a loop) then a path relative to the root,
 * whose components may hold tabs, newlines and invalid UTF-8; 'j' and 'p'
 * make files named .jpg and .png.  The tree is built afresh under a folder
 * of this process, then scanned. */
#include <errno.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "fuzz.h"

#define MAX_ENTRIES 64
#define MAX_PATH 1024

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* mkdir -p of path's parent folders inside root. */
static void make_parents(char *path) {
    for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
}

/* Whether a relative path has a ".." component, which would leave the root. */
static bool leaves_root(const char *rel, size_t len) {
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && rel[end] != '/') end++;
        if (end - i == 2 && rel[i] == '.' && rel[i + 1] == '.') return true;
        i = end + 1;
    }
    return false;
}

static void make_entry(const char *root, char kind, const char *rel, size_t len) {
    char path[MAX_PATH];
    if (len == 0 || memchr(rel, 0, len) || leaves_root(rel, len) ||
        (size_t)snprintf(path, sizeof path, "%s/%.*s", root, (int)len, rel) >= sizeof path)
        return;
    make_parents(path);
    if (kind == 'd') {
        mkdir(path, 0755);
    } else if (kind == 'l') {
        if (symlink(root, path) != 0 && errno != EEXIST) return;
    } else {
        const char *ext = kind == 'j' ? ".jpg" : kind == 'p' ? ".png" : "";
        char file[MAX_PATH + 8];
        snprintf(file, sizeof file, "%s%s", path, ext);
        FILE *f = fopen(file, "wb");
        if (f) fclose(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char root[256];
    if (!root[0]) snprintf(root, sizeof root, "/tmp/onnxtl-fuzz-tree-%d", (int)getpid());
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(root, 0755) != 0) abort();
    int entries = 0;
    for (size_t i = 0; i < size && entries < MAX_ENTRIES; entries++) {
        const char *start = (const char *)data + i;
        const char *nul = memchr(start, 0, size - i);
        const size_t len = nul ? (size_t)(nul - start) : size - i;
        if (len > 1) make_entry(root, start[0], start + 1, len - 1);
        i += len + 1;
    }
    otl_dataset *ds = NULL;
    fuzz_drop(otl_dataset_scan(root, &ds));
    otl_dataset_free(ds);
    return 0;
}
