/* Runs a fuzz target on saved inputs, files or folders of them, without
 * libFuzzer: the regression corpus under test/fuzz/<target>/ in make test.
 * usage: replay_<target> FILE_OR_DIR... */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0) {
        rewind(f);
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = -1;
    }
    if (f) fclose(f);
    if (!buf || n < 0) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        return 1;
    }
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int run_path(const char *path, int *count) {
    struct stat sb;
    if (stat(path, &sb) != 0) return perror(path), 1;
    if (!S_ISDIR(sb.st_mode)) return (*count)++, run_file(path);
    DIR *d = opendir(path);
    if (!d) return perror(path), 1;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        rc |= run_path(child, count);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv) {
    int rc = 0, count = 0;
    for (int i = 1; i < argc; i++) rc |= run_path(argv[i], &count);
    /* Reaching here means no input crashed, leaked or tripped a sanitizer. */
    printf("%s replay %s: %d saved inputs ran\n", rc ? "FAIL" : "PASS", argv[0], count);
    return rc;
}
