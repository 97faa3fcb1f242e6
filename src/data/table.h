/* Lines and fields of TSV/CSV tables, as the readers of pools see them:
 * one record a line (no newline inside quotes), CSV quoting as RFC 4180,
 * and a bound on a line's length so a 2 GiB line is never held. */
#ifndef VLP_DATA_TABLE_H
#define VLP_DATA_TABLE_H
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

/* A row longer than this is skipped, never held: real captions are a few
 * KB, and a table may hold a 2 GiB line (a caption file gone wrong). */
#define TABLE_MAX_LINE (256 * 1024)

/* The next line into *buf (grown up to TABLE_MAX_LINE, NUL bytes and all):
 * its length, -1 at the end; a longer line is read through and dropped
 * (*too_long, length 0). */
ssize_t table_line(FILE *fp, char **buf, size_t *cap, bool *too_long);

/* Splits one record into at most max fields in place. CSV: RFC 4180 quotes
 * (a quoted field may hold the separator, "" for a quote). Returns the count. */
int table_split(char *line, char sep, bool csv, char **f, int max);

/* The header line (its newline cut) split into columns, a UTF-8 byte order
 * mark first dropped (spreadsheets write one, and "\xEF\xBB\xBFfilepath" is
 * no column a user asked for). Returns the count. */
int table_header(char *line, char sep, bool csv, char **f, int max);
/* The column named key among the header's n: its index, or -1 with the
 * message "PATH:1: the header lacks column 'KEY' (its columns: a, b, c)" in
 * msg (every column, or the first ones and how many more). */
int table_column(char *const *f, int n, const char *key, const char *path, char *msg, size_t cap);

/* The one rule for what a data spec is: a table when it ends in .tsv or
 * .csv (then *csv says which; csv may be NULL), else shard patterns. */
bool table_spec(const char *spec, bool *csv);
/* true when text holds nothing but spaces, tabs and line ends (an empty
 * caption, for every reader) */
bool table_blank(const char *text);

/* A CSV field as RFC 4180 writes it: quoted when it holds a comma, a quote
 * or a line break (quotes doubled), else as is. */
void table_write_csv_field(FILE *fp, const char *field);
#endif
