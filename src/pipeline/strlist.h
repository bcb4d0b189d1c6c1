/* A growable list of owned strings. */
#ifndef OTL_STRLIST_H
#define OTL_STRLIST_H

#include <stddef.h>

#include "onnxtl.h"

typedef struct {
    char **items;
    size_t n, cap;
} otl_strlist;

onnxtl_status *otl_strlist_push(otl_strlist *l, const char *s);
void otl_strlist_sort(otl_strlist *l);
void otl_strlist_free(otl_strlist *l);

#endif
