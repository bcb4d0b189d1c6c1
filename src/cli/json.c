#include "json.h"

#include <math.h>
#include <stdlib.h>

cli_json cli_json_start(FILE *f) { return (cli_json){.f = f}; }

/* The length of the well-formed UTF-8 sequence at s (shortest form, no
 * surrogates, at most U+10FFFF), or 0. */
static int utf8_length(const unsigned char *s) {
    const int n = s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] < 0xf5 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

/* File names need not be UTF-8: a byte that is not is written as U+FFFD. */
static void put_string(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s++);
        else if (*s < 0x20) fprintf(f, "\\u%04x", *s++);
        else if (*s < 0x80) fputc(*s++, f);
        else {
            const int n = utf8_length(s);
            if (n) fwrite(s, 1, (size_t)n, f), s += n;
            else fputs("\\ufffd", f), s++;
        }
    }
    fputc('"', f);
}

/* The comma and the key before an item. */
static void item(cli_json *j, const char *key) {
    if (j->has_items[j->depth]) fputs(", ", j->f);
    j->has_items[j->depth] = true;
    if (key) put_string(j->f, key), fputs(": ", j->f);
}

static void open_container(cli_json *j, const char *key, char open, char close) {
    item(j, key);
    fputc(open, j->f);
    if (j->depth + 1 == CLI_JSON_DEPTH) abort(); /* the callers nest a fixed few levels */
    j->depth++;
    j->has_items[j->depth] = false;
    j->closer[j->depth] = close;
}

void cli_json_object(cli_json *j, const char *key) { open_container(j, key, '{', '}'); }
void cli_json_array(cli_json *j, const char *key) { open_container(j, key, '[', ']'); }

void cli_json_close(cli_json *j) {
    if (!j->depth) return; /* nothing open: a caller's mistake, not worth broken output */
    fputc(j->closer[j->depth--], j->f);
    if (!j->depth) fputc('\n', j->f);
}

void cli_json_str(cli_json *j, const char *key, const char *v) {
    item(j, key);
    if (v) put_string(j->f, v);
    else fputs("null", j->f);
}

void cli_json_num(cli_json *j, const char *key, double v) {
    item(j, key);
    if (isfinite(v)) fprintf(j->f, "%.9g", v);
    else fputs("null", j->f);
}

void cli_json_int(cli_json *j, const char *key, long long v) {
    item(j, key);
    fprintf(j->f, "%lld", v);
}

void cli_json_bool(cli_json *j, const char *key, bool v) {
    item(j, key);
    fputs(v ? "true" : "false", j->f);
}

void cli_json_dims(cli_json *j, const char *key, const int64_t *dims, int rank) {
    cli_json_array(j, key);
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) cli_json_str(j, NULL, NULL);
        else cli_json_int(j, NULL, (long long)dims[i]);
    }
    cli_json_close(j);
}

void cli_json_feature_stats(cli_json *j, const char *key, const otl_features_stats *s, const char *const *classes) {
    cli_json_object(j, key);
    cli_json_int(j, "rows", (long long)s->rows);
    cli_json_object(j, "splits");
    for (int sp = 0; sp < SPLIT_COUNT; sp++) {
        if (!s->split_rows[sp]) continue;
        cli_json_object(j, otl_split_names[sp]);
        for (int c = 0; c < s->n_classes; c++) cli_json_int(j, classes[c], (long long)s->class_rows[sp * s->n_classes + c]);
        cli_json_close(j);
    }
    cli_json_close(j);
    const double finite = (double)s->values - (double)s->nonfinite;
    cli_json_num(j, "min", s->rows ? s->min : NAN);
    cli_json_num(j, "max", s->rows ? s->max : NAN);
    cli_json_num(j, "mean", finite > 0 ? s->sum / finite : NAN);
    cli_json_int(j, "nonfinite", (long long)s->nonfinite);
    cli_json_close(j);
}
