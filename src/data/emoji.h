/*
 * The emoji corpus (npm emoji-datasource-<vendor>, fetched by
 * scripts/get-data.sh): emoji.json plus img/<vendor>/64/<image>.png. Every
 * base emoji and skin-tone variation a vendor has an image for becomes one
 * image–caption pair, the caption built from the emoji's name, short names,
 * subcategory and category:
 *   "grinning face with big eyes (smiley), a face smiling emoji of smileys & emotion"
 * Categories are the 9 real ones; 'Component' (skin-tone swatches) gets -1.
 */
#ifndef VLP_DATA_EMOJI_H
#define VLP_DATA_EMOJI_H
#include <stdint.h>

#include "core/error.h"

#define EMOJI_NCATEGORIES 9
#define EMOJI_SIZE 64

extern const char *const emoji_categories[EMOJI_NCATEGORIES]; // lower case, as in prompts

typedef struct emoji_set {
    int n;
    uint8_t *rgb;    // (n, 64, 64, 3), alpha composited on white
    char **caption;  // (n)
    char **name;     // (n) e.g. "waving hand: medium skin tone"
    char **path;     // (n) the PNG file
    int *category;   // (n) index into emoji_categories, or -1
    int *vendor;     // (n) index into the vendor list given to emoji_load
} emoji_set;

/* The coarse caption inside a full one, "a face smiling emoji of smileys &
 * emotion": a description at the level of the subcategory, no name. */
const char *emoji_coarse_caption(const char *caption);

/* vendors: comma-separated, e.g. "google,apple,facebook". */
vlp_err emoji_load(const char *dir, const char *vendors, emoji_set *out, vlp_error *err);
/* How to fetch the corpus into dir, for messages: the fetch script where vlp
 * finds it (the source tree's, or the installed share/vlp/scripts/get-data.sh)
 * as a command to run */
void emoji_fetch_hint(const char *dir, char *buf, size_t n);
void emoji_free(emoji_set *s);
#endif
