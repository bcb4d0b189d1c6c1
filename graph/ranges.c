#include "ranges.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

bool otl_ranges_name_ok(const char *name) { return *name && !strpbrk(name, "\t\n\r"); }

const otl_range *otl_ranges_find(const otl_ranges *r, const char *name) {
    for (size_t i = 0; r && i < r->n; i++)
        if (!strcmp(r->items[i].name, name)) return &r->items[i];
    return NULL;
}

onnxtl_status *otl_ranges_cover(otl_ranges *r, const char *name, float min, float max) {
    if (!otl_ranges_name_ok(name) || !isfinite(min) || !isfinite(max) || min > max)
        return otl_error(ONNXTL_ERR_ARG, "tensor '%s': cannot record the range [%g, %g]", name, min, max);
    otl_range *have = (otl_range *)otl_ranges_find(r, name);
    if (have) {
        have->min = fminf(have->min, min), have->max = fmaxf(have->max, max);
        return NULL;
    }
    otl_range *items = realloc(r->items, sizeof *items * (r->n + 1));
    if (!items) return otl_nomem();
    r->items = items;
    if (!(items[r->n].name = strdup(name))) return otl_nomem();
    items[r->n].min = min, items[r->n].max = max;
    r->n++;
    return NULL;
}

static bool parse_float(const char *s, const char *end, float *v) {
    char *stop;
    *v = strtof(s, &stop);
    return stop == end && stop != s && isfinite(*v);
}

static onnxtl_status *parse_line(otl_ranges *r, char *line, size_t number) {
    char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    float min, max;
    if (!tab2 || !parse_float(line, tab1, &min) || !parse_float(tab1 + 1, tab2, &max) || min > max ||
        !otl_ranges_name_ok(tab2 + 1))
        return otl_error(ONNXTL_ERR_FORMAT, "activation range line %zu is not 'MIN<tab>MAX<tab>NAME' with "
                         "finite MIN <= MAX", number);
    if (otl_ranges_find(r, tab2 + 1))
        return otl_error(ONNXTL_ERR_FORMAT, "activation range line %zu repeats tensor '%s'", number, tab2 + 1);
    return otl_ranges_cover(r, tab2 + 1, min, max);
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
