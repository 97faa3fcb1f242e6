/*
 * One description of an option, for every place that handles it: the
 * command line (flag, value name, help with the default), the C API (set by
 * key from text), the files a run keeps (JSON), the resume comparison and
 * the range checks. A table of opt_desc over a struct is the whole of a
 * command's or a run's options; what the value is comes from its type (an
 * opt_type: parse, print, JSON), so a special kind of value (a precision,
 * an objective's name) is one more opt_type, not one more parser.
 */
#ifndef VLP_CORE_OPTDESC_H
#define VLP_CORE_OPTDESC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct opt_desc opt_desc;

/* What a value is: how it is read from text and JSON and written back. */
typedef struct opt_type {
    const char *what;  // "a whole number", for messages
    bool is_switch;    // given without a value on the command line (sets it on)
    /* text → *dst: range-checked; the message names d->flag */
    vlp_err (*parse)(const opt_desc *d, void *dst, const char *text, vlp_error *err);
    /* *src → text, as the command line would give it back */
    void (*format)(const opt_desc *d, const void *src, char *buf, size_t cap);
    json_t *(*to_json)(const opt_desc *d, const void *src);
    bool (*from_json)(const opt_desc *d, void *dst, const json_t *v); // false: wrong type or range
    size_t size;
} opt_type;

/* the plain types: const char *, int, long, uint64_t (a string in JSON:
 * numbers lose 64-bit integers), float, double, bool given as a switch,
 * bool given as on|off */
extern const opt_type opt_string, opt_int, opt_long, opt_u64, opt_float, opt_double, opt_switch,
    opt_onoff;
/* a switch that turns a bool off ("--no-grad-checkpointing") */
extern const opt_type opt_switch_off;

/* what an option is to a run (opt_desc.flags) */
enum {
    OPT_STATE = 1u << 0,      // recorded in the training state: the math
    OPT_DATA = 1u << 1,       // recorded in the run's data.json: what it reads
    OPT_CHANGEABLE = 1u << 2, // a resumed run may give another value
    OPT_NEW_RUN = 1u << 3,    // decided once by a new run; refused on resume
    OPT_REQUIRED = 1u << 4,   // the command line must give it
    OPT_ALWAYS_SAVED = 1u << 7, // in every file since its first version: a file without it is refused
    OPT_PATH = 1u << 8,       // files ('::'-joined lists too): a run records them absolute
    OPT_ALIAS = 1u << 5,      // another flag for the field of an entry before it: not in files
    OPT_HIDDEN = 1u << 6,     // parsed, not listed in --help
};

struct opt_desc {
    const char *key;   // the files' and the API's name ("lr"); NULL: the command line's only
    const char *shrt;  // "-b" or NULL
    const char *flag;  // "--batch"
    const char *arg;   // the value's name in --help ("N"); NULL for a switch
    const opt_type *type;
    size_t off;        // where the value lives in the table's struct
    double lo, hi;     // a number's range (both 0: any)
    unsigned flags;
    const char *help;  // one line; --help appends the default
    const char *absent; // JSON that a file written before the option existed ran with; NULL: the default
};

/* The entry by key or flag (short or long), or NULL. */
const opt_desc *opt_find(const opt_desc *t, int n, const char *key_or_flag);
/* Sets base's field from text (a switch: NULL or "on"/"off"). */
vlp_err opt_set(const opt_desc *d, void *base, const char *text, vlp_error *err);
void opt_format(const opt_desc *d, const void *base, char *buf, size_t cap);
json_t *opt_to_json(const opt_desc *d, const void *base);
bool opt_from_json(const opt_desc *d, void *base, const json_t *v);
/* opt_from_json, or VLP_ERR_FORMAT saying where: `WHERE: "key" is VALUE;
 * --flag takes WANTS` (a file never carries a value the flag refuses) */
vlp_err opt_read_json(const opt_desc *d, void *base, const json_t *v, const char *where, vlp_error *err);
void opt_copy(const opt_desc *d, void *dst, const void *src);
/* what the option takes, for a message: "a whole number in 0..16777216",
 * "a number in [0.01, 1]", "text" */
void opt_wants(const opt_desc *d, char *buf, size_t cap);
/* "--batch N": the head of its --help line; "" for the short flag's column */
void opt_help_head(const opt_desc *d, char *buf, size_t cap);
/* its help text with the default read from `defaults` (NULL: none) */
void opt_help_text(const opt_desc *d, const void *defaults, char *buf, size_t cap);

/* v as the shortest text that reads back the same (as a float when f32) */
void opt_shortest(double v, bool f32, char *buf, size_t cap);
#endif
