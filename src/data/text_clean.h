/* The text clean-up open_clip's tokenizer applies before BPE, done the way
 * Python does it: html.unescape (HTML5 named references, numeric references
 * with their fix-ups), whitespace as str.isspace, and str.lower (full case
 * mapping: 'İ' → "i̇", final sigma). Input may be invalid UTF-8: every bad
 * byte becomes U+FFFD. All functions return a malloc'd string or NULL (OOM). */
#ifndef VLP_DATA_TEXT_CLEAN_H
#define VLP_DATA_TEXT_CLEAN_H
#include <stdbool.h>
#include <stddef.h>

char *utf8_sanitize(const char *s, size_t n);
char *html_unescape(const char *s);
/* strip, then every run of whitespace → one space */
char *whitespace_clean(const char *s);
char *py_lower(const char *s);
bool py_isspace(int cp);
#endif
