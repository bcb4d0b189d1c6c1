/* The metadata text of a features file: writing it and parsing it back. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_format.h"
#include "ranges.h"
#include "status.h"

typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

static onnxtl_status *appendf(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static onnxtl_status *appendf(text_buf *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return otl_error(ONNXTL_ERR_RUNTIME, "metadata formatting failed");
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return NULL;
        }
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *b = realloc(t->buf, cap);
        if (!b) return otl_nomem();
        t->buf = b;
        t->cap = cap;
    }
}

bool otl_features_dtype_parse(const char *name, int *dtype) {
    if (!strcmp(name, "float32") || !strcmp(name, "fp32")) *dtype = ONNXTL_FLOAT;
    else if (!strcmp(name, "float16") || !strcmp(name, "fp16")) *dtype = ONNXTL_FLOAT16;
    else return false;
    return true;
}

const char *otl_features_dtype_name(int dtype) { return dtype == ONNXTL_FLOAT16 ? "float16" : "float32"; }

onnxtl_status *otl_features_meta_text(const otl_features_meta *m, char **text, size_t *len) {
    text_buf t = {0};
    otl_preprocess_text pt;
    otl_preprocess_to_text(&m->pre, &pt);
    onnxtl_status *st = appendf(&t,
        "onnxtl-features %d\nmodel=%s\nmodel_sha256=%s\ncut=%s\nhead=%s\ndtype=%s\ndim=%u\ncompute=%s\n"
        "resize=%s\ncrop=%s\nmean=%s\nstd=%s\nchannels=%s\nscale=%s\nshard=%d/%d\n",
        OTL_FEATURES_VERSION, m->model_path, m->model_sha256, m->cut, m->head,
        otl_features_dtype_name(m->dtype), m->dim, m->compute, pt.resize, pt.crop,
        pt.mean, pt.std, pt.channels, pt.scale, m->shard_k, m->shard_n);
    if (!st && m->views > 1)
        st = appendf(&t, "views=%d\naugment=%s\nseed=%llu\n", m->views, otl_augment_name(&m->augment),
                     (unsigned long long)m->augment.seed);
    for (const char *r = m->int8_ranges, *end; !st && r && *r; r = *end ? end + 1 : end) {
        end = strchr(r, '\n');
        if (!end) end = r + strlen(r);
        st = appendf(&t, "int8_range=%.*s\n", (int)(end - r), r);
    }
    for (int i = 0; !st && i < m->n_classes; i++) st = appendf(&t, "class=%s\n", m->classes[i]);
    for (size_t i = 0; !st && i < m->n_images; i++)
        st = appendf(&t, "image=%s\t%d\t%s\n", otl_split_names[m->images[i].split], m->images[i].label,
                     m->images[i].path);
    if (st) {
        free(t.buf);
        return st;
    }
    *text = t.buf;
    *len = t.len;
    return NULL;
}

void otl_features_meta_free(otl_features_meta *m) {
    free(m->model_path);
    free(m->cut);
    free(m->head);
    free(m->int8_ranges);
    for (int i = 0; i < m->n_classes; i++) free(m->classes[i]);
    free(m->classes);
    for (size_t i = 0; i < m->n_images; i++) free(m->images[i].path);
    free(m->images);
    memset(m, 0, sizeof *m);
}

static int split_index(const char *s) {
    for (int i = 0; i < SPLIT_COUNT; i++)
        if (!strcmp(s, otl_split_names[i])) return i;
    return -1;
}

/* extract records paths relative to the data folder, so one that is absolute
 * or climbs out of it was written by someone else: it is refused before
 * anything could follow it. */
static bool stays_inside(const char *path) {
    if (!*path || *path == '/') return false;
    for (const char *c = path; c;) {
        const char *slash = strchr(c, '/');
        const size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return false;
        c = slash ? slash + 1 : NULL;
    }
    return true;
}

static onnxtl_status *parse_image_line(otl_features_meta *m, char *v) {
    char *tab1 = strchr(v, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    if (!tab2) return otl_error(ONNXTL_ERR_FORMAT, "malformed image line");
    *tab1 = *tab2 = '\0';
    otl_sample *s = &m->images[m->n_images];
    s->split = split_index(v);
    char *end;
    long label = strtol(tab1 + 1, &end, 10);
    if (s->split < 0 || *end || label < 0 || label >= m->n_classes)
        return otl_error(ONNXTL_ERR_FORMAT, "image line with a bad split or label");
    s->label = (int)label;
    if (!stays_inside(tab2 + 1))
        return otl_error(ONNXTL_ERR_FORMAT, "image path '%s' is not inside the data folder (extract writes "
                         "relative paths only; this file was altered)", tab2 + 1);
    if (!(s->path = strdup(tab2 + 1))) return otl_nomem();
    m->n_images++;
    return NULL;
}

/* "2048x1000" or "25088x4096,4096x4096,4096x1000": positive sizes only. */
static onnxtl_status *parse_head(otl_features_meta *m, const char *v) {
    m->n_head_layers = 0;
    for (const char *p = v; *p;) {
        char *end;
        long long in = strtoll(p, &end, 10), out = 0;
        if (end == p || *end != 'x' || in < 1) return otl_error(ONNXTL_ERR_FORMAT, "bad head line '%s'", v);
        p = end + 1;
        out = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || out < 1) return otl_error(ONNXTL_ERR_FORMAT, "bad head line '%s'", v);
        if (m->n_head_layers < OTL_FEATURES_MAX_HEAD)
            m->head_layers[m->n_head_layers][0] = in, m->head_layers[m->n_head_layers][1] = out;
        m->n_head_layers++;
        p = *end ? end + 1 : end;
    }
    return NULL;
}

/* The int8 ranges must parse as ranges: scales from a damaged line would
 * quantise a resume differently. */
static onnxtl_status *check_ranges(const char *text) {
    otl_ranges r;
    OTL_TRY(otl_ranges_parse(text, strlen(text), &r));
    otl_ranges_free(&r);
    return NULL;
}

static onnxtl_status *parse_views(otl_features_meta *m, const char *v) {
    char *end;
    const long k = strtol(v, &end, 10);
    if (end == v || *end || k < 2 || k > OTL_FEATURES_MAX_VIEWS)
        return otl_error(ONNXTL_ERR_FORMAT, "bad views line '%s' (2 to %d)", v, OTL_FEATURES_MAX_VIEWS);
    m->views = (int)k;
    return NULL;
}

static onnxtl_status *dup_into(char **dst, const char *v) {
    free(*dst);
    return (*dst = strdup(v)) ? NULL : otl_nomem();
}

/* What parsing gathers: the metadata, and its int8 range lines as text. */
typedef struct {
    otl_features_meta *m;
    text_buf ranges;
} parse_state;

static onnxtl_status *parse_line(parse_state *ps, char *line) {
    otl_features_meta *m = ps->m;
    char *eq = strchr(line, '=');
    if (!eq) return NULL;
    *eq = '\0';
    const char *k = line;
    char *v = eq + 1;
    if (!strcmp(k, "model")) return dup_into(&m->model_path, v);
    if (!strcmp(k, "model_sha256")) snprintf(m->model_sha256, sizeof m->model_sha256, "%s", v);
    else if (!strcmp(k, "cut")) return dup_into(&m->cut, v);
    else if (!strcmp(k, "head")) {
        OTL_TRY(parse_head(m, v));
        return dup_into(&m->head, v);
    }
    else if (!strcmp(k, "dtype") && !otl_features_dtype_parse(v, &m->dtype))
        return otl_error(ONNXTL_ERR_FORMAT, "unsupported dtype '%s' (float32 or float16)", v);
    else if (!strcmp(k, "dim")) m->dim = (uint32_t)strtoul(v, NULL, 10);
    else if (!strcmp(k, "views")) return parse_views(m, v);
    else if (!strcmp(k, "augment")) return otl_error_wrap(otl_augment_parse(v, &m->augment), "bad augment line");
    else if (!strcmp(k, "seed")) m->augment.seed = strtoull(v, NULL, 10);
    else if (!strcmp(k, "compute")) snprintf(m->compute, sizeof m->compute, "%s", v);
    else if (!strcmp(k, "int8_range")) return appendf(&ps->ranges, "%s\n", v);
    else if (!strcmp(k, "resize")) return otl_preprocess_parse(&m->pre, &(otl_preprocess_spec){.resize = v});
    else if (!strcmp(k, "crop")) return otl_preprocess_parse(&m->pre, &(otl_preprocess_spec){.crop = v});
    else if (!strcmp(k, "mean")) return otl_preprocess_parse(&m->pre, &(otl_preprocess_spec){.mean = v});
    else if (!strcmp(k, "std")) return otl_preprocess_parse(&m->pre, &(otl_preprocess_spec){.std = v});
    else if (!strcmp(k, "channels")) return otl_preprocess_parse(&m->pre, &(otl_preprocess_spec){.channels = v});
    else if (!strcmp(k, "scale")) return otl_preprocess_parse(&m->pre, &(otl_preprocess_spec){.scale = v});
    else if (!strcmp(k, "shard") && sscanf(v, "%d/%d", &m->shard_k, &m->shard_n) != 2)
        return otl_error(ONNXTL_ERR_FORMAT, "bad shard line");
    else if (!strcmp(k, "class")) {
        if (m->n_images) return otl_error(ONNXTL_ERR_FORMAT, "class line after image lines");
        char **c = realloc(m->classes, sizeof *c * (size_t)(m->n_classes + 1));
        if (!c) return otl_nomem();
        m->classes = c;
        return (m->classes[m->n_classes++] = strdup(v)) ? NULL : otl_nomem();
    } else if (!strcmp(k, "image")) {
        return parse_image_line(m, v);
    }
    return NULL;
}

/* Parses the metadata block; the image table is sized from its line count. */
onnxtl_status *otl_features_meta_parse(const char *text, size_t len, otl_features_meta *m) {
    memset(m, 0, sizeof *m);
    m->dtype = ONNXTL_FLOAT;
    m->views = 1;
    otl_preprocess_default(&m->pre);
    char *copy = malloc(len + 1);
    if (!copy) return otl_nomem();
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += copy[i] == '\n';
    onnxtl_status *st = NULL;
    if (strncmp(copy, "onnxtl-features ", 16)) st = otl_error(ONNXTL_ERR_FORMAT, "metadata does not start with 'onnxtl-features'");
    else if (!(m->images = calloc(lines, sizeof *m->images))) st = otl_nomem();
    char *save = NULL;
    parse_state ps = {m, {0}};
    for (char *line = st ? NULL : strtok_r(copy, "\n", &save); line && !st; line = strtok_r(NULL, "\n", &save))
        st = parse_line(&ps, line);
    free(copy);
    m->int8_ranges = ps.ranges.buf;
    if (!st && (!m->model_path || !m->cut || !m->head || m->dim == 0 || m->n_classes < 1))
        st = otl_error(ONNXTL_ERR_FORMAT, "metadata lacks model, cut, head, dim or classes");
    if (!st && m->int8_ranges) st = check_ranges(m->int8_ranges);
    if (!st && m->views > 1 && !m->augment.crop && !m->augment.flip)
        st = otl_error(ONNXTL_ERR_FORMAT, "views without an augment line");
    if (st) otl_features_meta_free(m);
    return st;
}

