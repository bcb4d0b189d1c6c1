/* --json output: one JSON value written as it is built, commas and escapes
 * handled here.  Members take a key inside an object and NULL inside an
 * array or at the top. */
#ifndef OTL_CLI_JSON_H
#define OTL_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "feature_file.h"

#define CLI_JSON_DEPTH 16

typedef struct {
    FILE *f;
    int depth;                      /* nesting is the callers' own, at most CLI_JSON_DEPTH - 1 */
    bool has_items[CLI_JSON_DEPTH]; /* a comma goes before the next item at that depth */
    char closer[CLI_JSON_DEPTH];    /* '}' or ']' */
} cli_json;

cli_json cli_json_start(FILE *f);
void cli_json_object(cli_json *j, const char *key);
void cli_json_array(cli_json *j, const char *key);
void cli_json_close(cli_json *j); /* the innermost object or array; at depth 0 a newline ends the value */
void cli_json_str(cli_json *j, const char *key, const char *v); /* NULL: null */
void cli_json_num(cli_json *j, const char *key, double v);      /* not finite: null */
void cli_json_int(cli_json *j, const char *key, long long v);
void cli_json_bool(cli_json *j, const char *key, bool v);
void cli_json_dims(cli_json *j, const char *key, const int64_t *dims, int rank); /* -1 (symbolic): null */

/* A features file's statistics as an object: rows per split and class, value range. */
void cli_json_feature_stats(cli_json *j, const char *key, const otl_features_stats *s, const char *const *classes);

#endif
