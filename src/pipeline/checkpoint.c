#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "checked.h"
#include "hash.h"
#include "status.h"

#define MAGIC "OTLSTATE"
#define VERSION 1u
/* magic, version, fingerprint length */
#define LEAD_BYTES 16
/* epoch, moments, steps, forwards, floats per block, running statistics' floats, four figures */
#define FIXED_BYTES (4 + 4 + 8 + 8 + 8 + 8 + 4 * 8)

/* The fixed fields after the fingerprint, packed in the file's order. */
static void pack_fixed(uint8_t *b, const otl_checkpoint_epoch *e, const otl_trainer_state *s) {
    const int32_t epoch = e->epoch;
    const uint32_t moments = s->v ? 2 : 1;
    const uint64_t n = s->n, n_stats = s->n_stats;
    const double fig[4] = {e->train_loss, e->train_acc, e->eval_loss, e->eval_acc};
    memcpy(b, &epoch, 4);
    memcpy(b + 4, &moments, 4);
    memcpy(b + 8, &s->steps, 8);
    memcpy(b + 16, &s->forwards, 8);
    memcpy(b + 24, &n, 8);
    memcpy(b + 32, &n_stats, 8);
    memcpy(b + 40, fig, sizeof fig);
}

/* Block i's bytes: the parameters and moments, then the running statistics. */
static size_t block_bytes(const otl_trainer_state *s, int i) { return (i < 3 ? s->n : s->n_stats) * sizeof(float); }

static onnxtl_status *write_checked(otl_atomic_file *out, const void *data, size_t bytes) {
    const uint32_t crc = otl_crc32c(data, bytes);
    OTL_TRY(otl_atomic_write(out, data, bytes));
    return otl_atomic_write(out, &crc, sizeof crc);
}

onnxtl_status *otl_checkpoint_write(const char *path, const char *fingerprint, const otl_checkpoint_epoch *e,
                                    const otl_trainer_state *s) {
    const size_t fp = strlen(fingerprint), head_bytes = LEAD_BYTES + fp + FIXED_BYTES;
    uint8_t *head = malloc(head_bytes);
    if (!head) return otl_nomem();
    const uint32_t version = VERSION, fp32 = (uint32_t)fp;
    memcpy(head, MAGIC, 8);
    memcpy(head + 8, &version, 4);
    memcpy(head + 12, &fp32, 4);
    memcpy(head + LEAD_BYTES, fingerprint, fp);
    pack_fixed(head + LEAD_BYTES + fp, e, s);
    otl_atomic_file out;
    onnxtl_status *st = otl_atomic_open(path, &out);
    if (!st) {
        const float *blocks[4] = {s->params, s->m, s->v, s->stats};
        st = write_checked(&out, head, head_bytes);
        for (int i = 0; i < 4 && !st; i++)
            if (blocks[i] && (i < 3 || s->n_stats)) st = write_checked(&out, blocks[i], block_bytes(s, i));
        st = otl_atomic_close(&out, st);
    }
    free(head);
    return st;
}

/* Reads bytes and their CRC; false when either cannot be read or they disagree. */
static bool read_checked(FILE *f, void *data, size_t bytes) {
    uint32_t crc;
    return fread(data, 1, bytes, f) == bytes && fread(&crc, sizeof crc, 1, f) == 1 && crc == otl_crc32c(data, bytes);
}

/* The first word of the first line where fingerprints a and b (n bytes each) differ. */
static void differing_line(const uint8_t *a, const uint8_t *b, size_t n, char *what, size_t what_n) {
    size_t line = 0, i = 0;
    while (i < n && a[i] == b[i])
        if (b[i++] == '\n') line = i;
    size_t k = 0;
    for (i = line; i < n && b[i] != ' ' && b[i] != '\n' && k + 1 < what_n; i++) what[k++] = (char)b[i];
    what[k] = '\0';
}

/* The file's magic, version and fingerprint against want's (fp bytes of
 * fingerprint), read into head, which has room for want's. */
static onnxtl_status *check_fingerprint(FILE *f, const char *path, const uint8_t *want, size_t fp, uint8_t *head) {
    if (fread(head, 1, LEAD_BYTES, f) != LEAD_BYTES || memcmp(head, want, 12))
        return otl_error(ONNXTL_ERR_FORMAT, "%s is not a checkpoint of this onnxtl's train", path);
    uint32_t file_fp;
    memcpy(&file_fp, head + 12, 4);
    const size_t n = file_fp < fp ? file_fp : fp;
    if (fread(head + LEAD_BYTES, 1, n, f) != n)
        return otl_error(ONNXTL_ERR_FORMAT, "%s is truncated", path);
    if (file_fp == fp && !memcmp(head + LEAD_BYTES, want + LEAD_BYTES, fp)) return NULL;
    char what[32];
    differing_line(head + LEAD_BYTES, want + LEAD_BYTES, n, what, sizeof what);
    return otl_error(ONNXTL_ERR_ARG, "%s comes from a training with another %s: resume with the command that began "
                     "it, or train without --resume", path, what);
}

/* The checkpoint's head against what this training would write. */
static onnxtl_status *check_head(const char *path, const uint8_t *head, const uint8_t *want, size_t fp,
                                 otl_checkpoint_epoch *e, otl_trainer_state *s) {
    const uint8_t *b = head + LEAD_BYTES + fp, *w = want + LEAD_BYTES + fp;
    if (memcmp(b + 4, w + 4, 4) || memcmp(b + 24, w + 24, 16))
        return otl_error(ONNXTL_ERR_FORMAT, "%s holds other parameters than the model's", path);
    int32_t epoch;
    double fig[4];
    memcpy(&epoch, b, 4);
    memcpy(&s->steps, b + 8, 8);
    memcpy(&s->forwards, b + 16, 8);
    memcpy(fig, b + 40, sizeof fig);
    if (epoch < 1 || s->steps < 0 || s->forwards < s->steps)
        return otl_error(ONNXTL_ERR_FORMAT, "%s: its counters are damaged", path);
    *e = (otl_checkpoint_epoch){epoch, fig[0], fig[1], fig[2], fig[3]};
    return NULL;
}

/* The file's size as this training's checkpoint would have it; 0 on overflow. */
static size_t expected_size(size_t head_bytes, const otl_trainer_state *s) {
    size_t block, blocks, stats, total;
    const size_t moments = s->v ? 2 : 1;
    if (!otl_mul_size(s->n, sizeof(float), &block) || !otl_add_size(block, 4, &block) ||
        !otl_mul_size(block, 1 + moments, &blocks) || !otl_mul_size(s->n_stats, sizeof(float), &stats) ||
        !otl_add_size(stats, s->n_stats ? 4 : 0, &stats) || !otl_add_size(blocks, stats, &blocks) ||
        !otl_add_size(blocks, head_bytes + 4, &total))
        return 0;
    return total;
}

onnxtl_status *otl_checkpoint_read(const char *path, const char *fingerprint, otl_checkpoint_epoch *e,
                                   otl_trainer_state *s) {
    FILE *f = fopen(path, "rb");
    if (!f) return otl_error(ONNXTL_ERR_IO, "%s: cannot open: %s (train writes it after each epoch)", path, strerror(errno));
    const size_t fp = strlen(fingerprint), head_bytes = LEAD_BYTES + fp + FIXED_BYTES;
    uint8_t *head = malloc(head_bytes), *want = malloc(head_bytes);
    struct stat sb;
    onnxtl_status *st = head && want ? NULL : otl_nomem();
    if (!st) {
        const otl_checkpoint_epoch none = {0};
        const uint32_t version = VERSION, fp32 = (uint32_t)fp;
        memcpy(want, MAGIC, 8);
        memcpy(want + 8, &version, 4);
        memcpy(want + 12, &fp32, 4);
        memcpy(want + LEAD_BYTES, fingerprint, fp);
        pack_fixed(want + LEAD_BYTES + fp, &none, s);
    }
    if (!st) st = check_fingerprint(f, path, want, fp, head);
    /* then the size: nothing read from the file decides how much to read */
    if (!st && (fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size != expected_size(head_bytes, s)))
        st = otl_error(ONNXTL_ERR_FORMAT, "%s is not a checkpoint of this training (its size differs), or it is "
                       "truncated", path);
    if (!st && fseek(f, 0, SEEK_SET) != 0) st = otl_error(ONNXTL_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    if (!st && !read_checked(f, head, head_bytes)) st = otl_error(ONNXTL_ERR_FORMAT, "%s: its header is damaged", path);
    if (!st) st = check_head(path, head, want, fp, e, s);
    float *blocks[4] = {s->params, s->m, s->v, s->stats};
    for (int i = 0; i < 4 && !st; i++)
        if (blocks[i] && (i < 3 || s->n_stats) && !read_checked(f, blocks[i], block_bytes(s, i)))
            st = otl_error(ONNXTL_ERR_FORMAT, "%s: block %d is damaged", path, i + 1);
    fclose(f);
    free(head);
    free(want);
    return st;
}
