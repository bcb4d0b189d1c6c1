#include "strlist.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

onnxtl_status *otl_strlist_push(otl_strlist *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **items = realloc(l->items, cap * sizeof *items);
        if (!items) return otl_nomem();
        l->items = items;
        l->cap = cap;
    }
    if (!(l->items[l->n] = strdup(s))) return otl_nomem();
    l->n++;
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void otl_strlist_sort(otl_strlist *l) {
    if (l->n) qsort(l->items, l->n, sizeof(char *), cmp_str);
}

void otl_strlist_free(otl_strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}
