/*
 * Text into the JSON vlp writes (data.json, checkpoint and prompt-file
 * metadata, shards' captions, curation output). jansson's json_string()
 * gives NULL for bytes that are not UTF-8, and json_*_set_new of NULL fails
 * quietly: the field would vanish. One rule, by what the text is:
 *   - free text (a caption): json_text_repaired, each byte that does not
 *     start a UTF-8 sequence becomes U+FFFD, as the tokenizer reads it;
 *   - a name or a path (a class, a file, metadata): json_set_exact, refused
 *     with the field named, since a changed name or path would no longer
 *     match what it names.
 * The setters report every failure (grep: json_put, json_set_exact).
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
#endif
