#include "data/table.h"

#include <stdlib.h>
#include <string.h>

int table_split(char *line, char sep, bool csv, char **f, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max) return n;
        if (csv && *p == '"') {
            char *w = ++p;
            f[n++] = w;
            for (;;) {
                if (!*p) break;
                if (*p == '"' && p[1] == '"') *w++ = '"', p += 2;
                else if (*p == '"') { p++; break; }
                else *w++ = *p++;
            }
            char *rest = strchr(p, sep);
            *w = '\0';
            if (!rest) return n;
            p = rest + 1;
        } else {
            f[n++] = p;
            char *e = strchr(p, sep);
            if (!e) return n;
            *e = '\0';
            p = e + 1;
        }
    }
}


ssize_t table_line(FILE *fp, char **buf, size_t *cap, bool *too_long) {
    size_t len = 0;
    int c = EOF;
    *too_long = false;
    while ((c = getc_unlocked(fp)) != EOF) {
        if (len + 2 > *cap && !*too_long) {
            size_t ncap = *cap ? 2 * *cap : 8192;
            char *g = ncap <= TABLE_MAX_LINE + 8192 ? realloc(*buf, ncap) : NULL;
            if (g) *buf = g, *cap = ncap;
            else *too_long = true; /* keep reading, keep nothing */
        }
        if (!*too_long) (*buf)[len] = (char)c;
        len++;
        if (c == '\n') break;
    }
    if (c == EOF && len == 0) return -1;
    if (*too_long) return 0;
    (*buf)[len] = '\0';
    return (ssize_t)len;
}


void table_write_csv_field(FILE *fp, const char *field) {
    if (!strpbrk(field, ",\"\r\n")) {
        fputs(field, fp);
        return;
    }
    putc('"', fp);
    for (const char *c = field; *c; c++) {
        if (*c == '"') putc('"', fp);
        putc(*c, fp);
    }
    putc('"', fp);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

bool table_spec(const char *spec, bool *csv) {
    bool c = ends_with(spec, ".csv");
    if (csv) *csv = c;
    return c || ends_with(spec, ".tsv");
}

bool table_blank(const char *t) {
    for (; *t; t++)
        if (*t != ' ' && *t != '\t' && *t != '\r' && *t != '\n') return false;
    return true;
}

int table_header(char *line, char sep, bool csv, char **f, int max) {
    if (!strncmp(line, "\xEF\xBB\xBF", 3)) memmove(line, line + 3, strlen(line + 3) + 1);
    return table_split(line, sep, csv, f, max);
}

int table_column(char *const *f, int n, const char *key, const char *path, char *msg, size_t cap) {
    for (int k = 0; k < n; k++)
        if (!strcmp(f[k], key)) return k;
    int used = snprintf(msg, cap, "%s:1: the header lacks column '%s' (its columns: ", path, key);
    int k = 0;
    for (; k < n && used > 0 && (size_t)used + strlen(f[k]) + 40 < cap; k++)
        used += snprintf(msg + used, cap - (size_t)used, "%s%s", k ? ", " : "", f[k]);
    if (used > 0 && (size_t)used < cap)
        snprintf(msg + used, cap - (size_t)used, k < n ? ", and %d more)" : ")", n - k);
    return -1;
}
