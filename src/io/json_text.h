/*
 * Text into the JSON vlp writes (data.json, checkpoint and prompt-file
 * metadata, shards' captions, curation output). jansson's json_string()
 * gives NULL for bytes that are not UTF-8, and json_*_set_new of NULL fails
 * quietly: the field would vanish. One rule, by what the text is:
 *   - free text (a caption), and what a report only shows (a path in a
 *     curation or eval report): json_text_repaired, each byte that does not
 *     start a UTF-8 sequence becomes U+FFFD, as the tokenizer reads it;
 *   - a name or a path (a class, a file, metadata): json_set_exact, refused
 *     with the field named, since a changed name or path would no longer
 *     match what it names.
 * The setters report every failure (grep: json_put, json_set_exact, jd_).
 * A document of many fields (a report) is built through a json_doc, which
 * keeps the first failure and is checked once, when it is written.
 */
#ifndef VLP_IO_JSON_TEXT_H
#define VLP_IO_JSON_TEXT_H
#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"

bool utf8_valid(const char *s);
/* s with every byte that does not start a valid sequence as U+FFFD (malloc'd; NULL: out of memory) */
char *utf8_repaired(const char *s);
/* a JSON string of any text, repaired; NULL: out of memory */
json_t *json_text_repaired(const char *s);
/* obj[key] = v (stolen; NULL is an error: out of memory); `what` names the file in messages */
vlp_err json_put(json_t *obj, const char *key, json_t *v, const char *what, vlp_error *err);
/* obj[key] = s exactly; text that is not UTF-8 is refused, naming what and key */
vlp_err json_set_exact(json_t *obj, const char *key, const char *s, const char *what, vlp_error *err);

/* A JSON document built field by field: the first failure (out of memory,
 * a name that is not UTF-8) is kept and later calls do nothing, so a writer
 * checks once, at json_doc_dumps, and no field vanishes unnoticed. */
typedef struct json_doc {
    json_t *root;     // an object
    vlp_err rc;       // the first failure
    char failed[320]; // its field and why
} json_doc;
json_doc json_doc_new(void);
json_t *jd_object(json_doc *d); /* a new object or array (kept: NULL after a failure) */
json_t *jd_array(json_doc *d);
/* obj[key] = v (stolen; NULL, or obj NULL after a failure: kept as the failure) */
void jd_put(json_doc *d, json_t *obj, const char *key, json_t *v);
/* obj[key] = text, repaired (json_text_repaired) */
void jd_text(json_doc *d, json_t *obj, const char *key, const char *text);
/* obj[key] = s exactly; text that is not UTF-8 is the failure */
void jd_exact(json_doc *d, json_t *obj, const char *key, const char *s);
void jd_append(json_doc *d, json_t *arr, json_t *v);
/* the document's text (malloc'd), or NULL and the first failure in err, naming `what` */
char *json_doc_dumps(json_doc *d, size_t flags, const char *what, vlp_error *err);
void json_doc_free(json_doc *d);
#endif
