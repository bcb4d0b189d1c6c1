#include "ranges.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

/* Ranges beyond this magnitude are refused: their int8 scales would leave
 * float's range once multiplied by the weights'. */
#define RANGE_LIMIT 1e30f

bool otl_ranges_name_ok(const char *name) { return *name && !strpbrk(name, "\t\n\r"); }

static int by_name(const void *a, const void *b) {
    return strcmp(((const otl_range *)a)->name, ((const otl_range *)b)->name);
}

/* Items are kept sorted by name, so lookups are binary searches. */
const otl_range *otl_ranges_find(const otl_ranges *r, const char *name) {
    if (!r || !r->n) return NULL;
    const otl_range key = {.name = (char *)name};
    return bsearch(&key, r->items, r->n, sizeof *r->items, by_name);
}

static bool range_ok(float min, float max) {
    return isfinite(min) && isfinite(max) && min <= max && fabsf(min) <= RANGE_LIMIT && fabsf(max) <= RANGE_LIMIT;
}

static onnxtl_status *grow(otl_ranges *r) {
    if (r->n < r->cap) return NULL;
    const size_t cap = r->cap ? 2 * r->cap : 64;
    otl_range *items = realloc(r->items, sizeof *items * cap);
    if (!items) return otl_nomem();
    r->items = items;
    r->cap = cap;
    return NULL;
}

onnxtl_status *otl_ranges_cover(otl_ranges *r, const char *name, float min, float max) {
    if (!otl_ranges_name_ok(name) || !range_ok(min, max))
        return otl_error(ONNXTL_ERR_ARG, "tensor '%s': cannot record the range [%g, %g]", name, min, max);
    otl_range *have = (otl_range *)otl_ranges_find(r, name);
    if (have) {
        have->min = fminf(have->min, min), have->max = fmaxf(have->max, max);
        return NULL;
    }
    OTL_TRY(grow(r));
    size_t at = 0;
    while (at < r->n && strcmp(r->items[at].name, name) < 0) at++;
    char *copy = strdup(name);
    if (!copy) return otl_nomem();
    memmove(&r->items[at + 1], &r->items[at], sizeof *r->items * (r->n - at));
    r->items[at] = (otl_range){copy, min, max};
    r->n++;
    return NULL;
}

static bool parse_float(const char *s, const char *end, float *v) {
    char *stop;
    *v = strtof(s, &stop);
    return stop == end && stop != s;
}

/* Appends one line's range; order and repeats are settled once all are read. */
static onnxtl_status *parse_line(otl_ranges *r, char *line, size_t number) {
    char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    float min, max;
    if (!tab2 || !parse_float(line, tab1, &min) || !parse_float(tab1 + 1, tab2, &max) || !range_ok(min, max) ||
        !otl_ranges_name_ok(tab2 + 1))
        return otl_error(ONNXTL_ERR_FORMAT, "activation range line %zu is not 'MIN<tab>MAX<tab>NAME' with "
                         "MIN <= MAX, both finite and at most 1e30 in magnitude", number);
    OTL_TRY(grow(r));
    if (!(r->items[r->n].name = strdup(tab2 + 1))) return otl_nomem();
    r->items[r->n].min = min, r->items[r->n].max = max;
    r->n++;
    return NULL;
}

static onnxtl_status *sort_unique(otl_ranges *r) {
    if (r->n) qsort(r->items, r->n, sizeof *r->items, by_name);
    for (size_t i = 1; i < r->n; i++)
        if (!strcmp(r->items[i - 1].name, r->items[i].name))
            return otl_error(ONNXTL_ERR_FORMAT, "activation ranges repeat tensor '%s'", r->items[i].name);
    return NULL;
}

onnxtl_status *otl_ranges_parse(const char *text, size_t len, otl_ranges *out) {
    *out = (otl_ranges){0};
    char *copy = malloc(len + 1);
    if (!copy) return otl_nomem();
    memcpy(copy, text, len);
    copy[len] = '\0';
    onnxtl_status *st = NULL;
    size_t number = 1;
    for (char *line = copy, *next; line && *line && !st; line = next, number++) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        st = parse_line(out, line, number);
    }
    free(copy);
    if (!st) st = sort_unique(out);
    if (st) otl_ranges_free(out);
    return st;
}

onnxtl_status *otl_ranges_text(const otl_ranges *r, char **text) {
    size_t cap = 1;
    for (size_t i = 0; i < r->n; i++) cap += strlen(r->items[i].name) + 2 * 16 + 3;
    char *t = malloc(cap), *p = t;
    if (!t) return otl_nomem();
    *p = '\0';
    /* %.9g: nine significant digits give back every float exactly */
    for (size_t i = 0; i < r->n; i++)
        p += snprintf(p, cap - (size_t)(p - t), "%.9g\t%.9g\t%s\n", r->items[i].min, r->items[i].max, r->items[i].name);
    *text = t;
    return NULL;
}

void otl_ranges_free(otl_ranges *r) {
    for (size_t i = 0; i < r->n; i++) free(r->items[i].name);
    free(r->items);
    *r = (otl_ranges){0};
}
