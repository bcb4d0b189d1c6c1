/* Runs the ONNX backend node tests listed in a manifest and compares with
 * ONNX's reference outputs (rtol 1e-3, atol 1e-7, as onnx's own runner).
 *
 * Manifest lines:  OP TEST              run TEST, counted under OP
 *                  skip TEST REASON...  listed but not run, with the reason
 * Every test folder in DATA_DIR must be listed one way or the other.
 *
 * usage: test_conformance MANIFEST DATA_DIR */
#include <dirent.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "onnxtl.h"
#include "proto.h"

#define MAX_TESTS 4096
#define MAX_IO 16

typedef struct {
    char op[64];
    char name[256];
    bool skip;
} entry;

static int load_manifest(const char *path, entry *e, int max) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        char a[64], b[256];
        if (line[0] == '#' || sscanf(line, "%63s %255s", a, b) != 2) continue;
        e[n].skip = !strcmp(a, "skip");
        snprintf(e[n].op, sizeof e[n].op, "%s", a);
        snprintf(e[n].name, sizeof e[n].name, "%s", b);
        n++;
    }
    fclose(f);
    return n;
}

static bool listed(const entry *e, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, name)) return true;
    return false;
}

static onnxtl_status *read_pb(const char *path, onnxtl_tensor *t) {
    Onnx__TensorProto *tp;
    OTL_TRY(otl_proto_read_tensor(path, &tp));
    otl_proto_tensor_info info;
    onnxtl_status *st = otl_proto_tensor_describe(tp, &info);
    if (!st) {
        t->dtype = info.dtype;
        t->rank = info.rank;
        memcpy(t->dims, info.dims, sizeof(int64_t) * (size_t)info.rank);
        t->data = malloc(info.nbytes ? info.nbytes : 1);
        st = t->data ? otl_proto_tensor_read(tp, &info, NULL, t->data) : otl_nomem();
    }
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

static double element(const onnxtl_tensor *t, int64_t i) {
    if (otl_dtype_is_narrow(t->dtype)) return otl_dtype_load(t->data, t->dtype, i); /* NaN's codes vary */
    switch (t->dtype) {
    case ONNXTL_FLOAT: return ((float *)t->data)[i];
    case ONNXTL_DOUBLE: return ((double *)t->data)[i];
    case ONNXTL_INT64: return (double)((int64_t *)t->data)[i];
    case ONNXTL_INT32: return ((int32_t *)t->data)[i];
    case ONNXTL_INT16: return ((int16_t *)t->data)[i];
    case ONNXTL_INT8: return ((int8_t *)t->data)[i];
    case ONNXTL_UINT64: return (double)((uint64_t *)t->data)[i];
    case ONNXTL_UINT32: return ((uint32_t *)t->data)[i];
    case ONNXTL_UINT16: case ONNXTL_FLOAT16: case ONNXTL_BFLOAT16: return ((uint16_t *)t->data)[i];
    default: return ((uint8_t *)t->data)[i];
    }
}

/* Compares within ONNX's tolerance; 16-bit floats compare bit-exactly as stored. */
static bool compare(const onnxtl_tensor *got, const onnxtl_tensor *want, char *why, size_t n) {
    if (got->dtype != want->dtype || got->rank != want->rank) {
        snprintf(why, n, "type/rank %s/%d, expected %s/%d", otl_dtype_name(got->dtype), got->rank,
                 otl_dtype_name(want->dtype), want->rank);
        return false;
    }
    int64_t count = 1;
    for (int i = 0; i < got->rank; i++) {
        if (got->dims[i] != want->dims[i]) {
            snprintf(why, n, "dimension %d is %lld, expected %lld", i, (long long)got->dims[i],
                     (long long)want->dims[i]);
            return false;
        }
        count *= got->dims[i];
    }
    double worst = 0;
    for (int64_t i = 0; i < count; i++) {
        double g = element(got, i), w = element(want, i);
        if (isnan(g) && isnan(w)) continue;
        double err = fabs(g - w), tol = 1e-7 + 1e-3 * fabs(w);
        if (g == w) continue;
        if (!(err <= tol)) {
            snprintf(why, n, "element %lld is %.9g, expected %.9g", (long long)i, g, w);
            return false;
        }
        if (err > worst) worst = err;
    }
    snprintf(why, n, "max abs error %.3g over %lld values", worst, (long long)count);
    return true;
}

static bool run_test(const char *dir, const char *name, const onnxtl_options *opts, char *why, size_t why_n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    onnxtl_model *m = NULL;
    onnxtl_session *s = NULL;
    onnxtl_tensor in[MAX_IO] = {0}, want[MAX_IO] = {0}, got[MAX_IO] = {0};
    size_t n_in = 0, n_out = 0;
    onnxtl_status *st = onnxtl_model_load(path, &m);
    if (!st) st = onnxtl_session_create(m, opts, &s);
    for (; !st && n_in < onnxtl_model_input_count(m) && n_in < MAX_IO; n_in++) {
        snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%zu.pb", dir, name, n_in);
        st = read_pb(path, &in[n_in]);
        onnxtl_tensor d;
        onnxtl_model_input(m, n_in, &d);
        in[n_in].name = d.name;
    }
    for (; !st && n_out < onnxtl_model_output_count(m) && n_out < MAX_IO; n_out++) {
        snprintf(path, sizeof path, "%s/%s/test_data_set_0/output_%zu.pb", dir, name, n_out);
        st = read_pb(path, &want[n_out]);
        onnxtl_tensor d;
        onnxtl_model_output(m, n_out, &d);
        got[n_out].name = d.name;
    }
    if (!st) st = onnxtl_session_run(s, in, n_in, got, n_out);
    bool ok = !st;
    if (st) snprintf(why, why_n, "%s", onnxtl_status_message(st));
    for (size_t i = 0; ok && i < n_out; i++) ok = compare(&got[i], &want[i], why, why_n);
    onnxtl_status_release(st);
    for (size_t i = 0; i < MAX_IO; i++) {
        free(in[i].data);
        free(want[i].data);
    }
    onnxtl_session_release(s);
    onnxtl_model_release(m);
    return ok;
}

typedef struct {
    char op[64];
    int passed, failed, skipped;
} op_count;

static op_count *count_for(op_count *c, int *n, const char *op) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(c[i].op, op)) return &c[i];
    snprintf(c[*n].op, sizeof c[*n].op, "%s", op);
    return &c[(*n)++];
}

/* Every test folder must be in the manifest, run or skipped with a reason. */
static int check_complete(const char *dir, const entry *e, int n) {
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    int missing = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (strncmp(de->d_name, "test_", 5)) continue;
        if (!listed(e, n, de->d_name)) {
            printf("UNLISTED %s: add it to the manifest, to run or to skip with a reason\n", de->d_name);
            missing++;
        }
    }
    closedir(d);
    return missing;
}

/* A device that cannot run at all (no GPU here) skips the suite, saying so. */
static bool device_missing(const char *why) { return strstr(why, "no CUDA GPU") != NULL; }

int main(int argc, char **argv) {
    onnxtl_options opts = {0};
    if (argc == 5 && !strcmp(argv[3], "--device")) opts.device = argv[4];
    else if (argc != 3) {
        fprintf(stderr, "usage: %s MANIFEST DATA_DIR [--device cpu|cuda|cuda:N]\n", argv[0]);
        return 2;
    }
    static entry e[MAX_TESTS];
    static op_count counts[256];
    int n = load_manifest(argv[1], e, MAX_TESTS), n_ops = 0, failed = 0, passed = 0;
    if (n < 0) return 2;
    int unlisted = check_complete(argv[2], e, n);
    for (int i = 0; i < n; i++) {
        if (e[i].skip) continue;
        char why[512] = "";
        bool ok = run_test(argv[2], e[i].name, &opts, why, sizeof why);
        if (!ok && device_missing(why)) {
            printf("SKIP conformance on %s: %s\n", opts.device, why);
            return 0;
        }
        op_count *c = count_for(counts, &n_ops, e[i].op);
        if (ok) c->passed++, passed++;
        else c->failed++, failed++;
        printf("%s %s: %s\n", ok ? "PASS" : "FAIL", e[i].name, why);
    }
    for (int i = 0; i < n; i++)
        if (e[i].skip) count_for(counts, &n_ops, "(skipped)")->skipped++;
    printf("\nper-op results:\n");
    for (int i = 0; i < n_ops; i++)
        printf("  %-20s %3d passed %3d failed %3d skipped\n", counts[i].op, counts[i].passed,
               counts[i].failed, counts[i].skipped);
    printf("conformance%s%s: %d passed, %d failed, %d unlisted\n", opts.device ? " on " : "",
           opts.device ? opts.device : "", passed, failed, unlisted);
    return failed || unlisted ? 1 : 0;
}
