#include "data/emoji.h"
#include "vlp.h"
#include "core/error.h"
#include "data/image.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const emoji_categories[EMOJI_NCATEGORIES] = {
    "smileys & emotion", "people & body", "animals & nature", "food & drink", "travel & places",
    "activities",        "objects",       "symbols",          "flags"};

#define MAX_VENDORS 8
#define TEXT_MAX 512

static int category_index(const char *c) {
    char low[64];
    size_t i = 0;
    for (; c[i] && i < sizeof low - 1; i++) low[i] = (char)tolower((unsigned char)c[i]);
    low[i] = '\0';
    for (int k = 0; k < EMOJI_NCATEGORIES; k++)
        if (!strcmp(low, emoji_categories[k])) return k;
    return -1;
}

/* "1F3FB" → "light skin tone" */
static const char *tone_name(const char *code) {
    static const char *const codes[] = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"};
    static const char *const names[] = {"light skin tone", "medium-light skin tone",
                                        "medium skin tone", "medium-dark skin tone",
                                        "dark skin tone"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(code, codes[i])) return names[i];
    return NULL;
}

static void lower_into(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src[i] && i < cap - 1; i++) dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

/* name of a variation: base name, then the tones of a key like "1F3FB-1F3FF" */
static void variation_name(char *out, size_t cap, const char *base, const char *key) {
    snprintf(out, cap, "%s:", base);
    char codes[64];
    snprintf(codes, sizeof codes, "%s", key);
    int first = 1;
    char *save;
    for (char *tok = strtok_r(codes, "-", &save); tok; tok = strtok_r(NULL, "-", &save)) {
        const char *t = tone_name(tok);
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s %s", first ? "" : ",", t ? t : tok);
        first = 0;
    }
}

static void build_caption(char *out, size_t cap, const char *name, json_t *short_names,
                          const char *subcategory, const char *category) {
    size_t l = (size_t)snprintf(out, cap, "%s", name);
    /* short names that say something the name does not */
    char extra[TEXT_MAX] = "";
    size_t el = 0;
    size_t i;
    json_t *sn;
    json_array_foreach(short_names, i, sn) {
        if (!json_is_string(sn)) continue;
        char s[128];
        lower_into(s, sizeof s, json_string_value(sn));
        for (char *p = s; *p; p++)
            if (*p == '_' || *p == '-') *p = ' ';
        if (strstr(name, s)) continue;
        el += (size_t)snprintf(extra + el, sizeof extra - el, "%s%s", el ? ", " : "", s);
        if (el >= sizeof extra) break;
    }
    if (el && l < cap) l += (size_t)snprintf(out + l, cap - l, " (%s)", extra);
    char sub[128], cat[128];
    lower_into(sub, sizeof sub, subcategory);
    lower_into(cat, sizeof cat, category);
    for (char *p = sub; *p; p++)
        if (*p == '-') *p = ' ';
    if (l < cap) snprintf(out + l, cap - l, ", a %s emoji of %s", sub, cat);
}

typedef struct builder {
    emoji_set *s;
    int cap;
} builder;

static vlp_err add_item(builder *b, const char *dir, const char *vendor, int vi, const char *image,
                        const char *name, const char *caption, int category, vlp_error *err) {
    emoji_set *s = b->s;
    if (s->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 1024;
        uint8_t *rgb = realloc(s->rgb, (size_t)cap * EMOJI_SIZE * EMOJI_SIZE * 3);
        if (rgb) s->rgb = rgb;
        char **c = rgb ? realloc(s->caption, sizeof(char *) * cap) : NULL;
        if (c) s->caption = c;
        char **nm = c ? realloc(s->name, sizeof(char *) * cap) : NULL;
        if (nm) s->name = nm;
        char **pa = nm ? realloc(s->path, sizeof(char *) * cap) : NULL;
        if (pa) s->path = pa;
        int *cat = pa ? realloc(s->category, sizeof(int) * cap) : NULL;
        if (cat) s->category = cat;
        int *ven = cat ? realloc(s->vendor, sizeof(int) * cap) : NULL;
        if (ven) s->vendor = ven;
        VLP_CHECK(ven, err, VLP_ERR_NOMEM, "emoji set of %d images", cap);
        b->cap = cap;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/img/%s/64/%s", dir, vendor, image);
    image_decode_opts o = {.composite = true, .background = {255, 255, 255}};
    image_u8 dec, im;
    VLP_TRY(image_load(path, &o, &dec, err));
    vlp_err rc = image_to_rgb(&dec, &im, err); /* held as RGB, composited on white */
    image_free(&dec);
    VLP_TRY(rc);
    if (im.w != EMOJI_SIZE || im.h != EMOJI_SIZE) {
        int w = im.w, h = im.h;
        image_free(&im);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: %dx%d, expected %dx%d", path, w, h, EMOJI_SIZE, EMOJI_SIZE);
    }
    memcpy(s->rgb + (size_t)s->n * EMOJI_SIZE * EMOJI_SIZE * 3, im.px, (size_t)EMOJI_SIZE * EMOJI_SIZE * 3);
    image_free(&im);
    s->caption[s->n] = strdup(caption);
    s->name[s->n] = strdup(name);
    s->path[s->n] = strdup(path);
    if (!s->caption[s->n] || !s->name[s->n] || !s->path[s->n]) {
        free(s->caption[s->n]), free(s->name[s->n]), free(s->path[s->n]);
        VLP_FAIL(err, VLP_ERR_NOMEM, "caption");
    }
    s->category[s->n] = category;
    s->vendor[s->n] = vi;
    s->n++;
    return VLP_OK;
}

static bool has_img(json_t *e, const char *vendor) {
    char key[300]; /* "has_img_" and a vendor name (the callers pass up to 255 bytes) */
    snprintf(key, sizeof key, "has_img_%s", vendor);
    return json_is_true(json_object_get(e, key));
}

static vlp_err add_entry(builder *b, const char *dir, const char *path, size_t idx, json_t *e,
                         char vendors[][32], int nv, vlp_error *err) {
    json_t *jname = json_object_get(e, "name"), *jimg = json_object_get(e, "image"),
           *jcat = json_object_get(e, "category"), *jsub = json_object_get(e, "subcategory");
    VLP_CHECK_FORMAT(json_is_string(jimg) && json_is_string(jcat) && json_is_string(jsub), err,
                     "%s: entry %zu lacks image, category or subcategory", path, idx);
    char name[TEXT_MAX / 2], caption[2 * TEXT_MAX];
    if (json_is_string(jname)) lower_into(name, sizeof name, json_string_value(jname));
    else lower_into(name, sizeof name, json_string_value(json_object_get(e, "short_name")) ?: "emoji");
    json_t *shorts = json_object_get(e, "short_names");
    const char *sub = json_string_value(jsub), *cat = json_string_value(jcat);
    int category = category_index(cat);
    for (int v = 0; v < nv; v++) {
        if (has_img(e, vendors[v])) {
            build_caption(caption, sizeof caption, name, shorts, sub, cat);
            VLP_TRY(add_item(b, dir, vendors[v], v, json_string_value(jimg), name, caption, category, err));
        }
        json_t *vars = json_object_get(e, "skin_variations");
        const char *key;
        json_t *var;
        json_object_foreach(vars, key, var) {
            json_t *vimg = json_object_get(var, "image");
            if (!json_is_string(vimg) || !has_img(var, vendors[v])) continue;
            char vname[TEXT_MAX];
            variation_name(vname, sizeof vname, name, key);
            build_caption(caption, sizeof caption, vname, shorts, sub, cat);
            VLP_TRY(add_item(b, dir, vendors[v], v, json_string_value(vimg), vname, caption, category, err));
        }
    }
    return VLP_OK;
}

const char *emoji_coarse_caption(const char *caption) {
    const char *last = NULL;
    for (const char *p = strstr(caption, ", a "); p; p = strstr(p + 1, ", a ")) last = p;
    return last ? last + 2 : caption;
}

void emoji_free(emoji_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->caption[i]), free(s->name[i]), free(s->path[i]);
    free(s->rgb), free(s->caption), free(s->name), free(s->path), free(s->category), free(s->vendor);
    memset(s, 0, sizeof *s);
}

vlp_err emoji_load(const char *dir, const char *vendor_list, emoji_set *out, vlp_error *err) {
    memset(out, 0, sizeof *out);
    char vendors[MAX_VENDORS][32];
    int nv = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", vendor_list);
    char *save;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        VLP_CHECK_ARG(nv < MAX_VENDORS && strlen(tok) < 32 && strspn(tok, "abcdefghijklmnopqrstuvwxyz") == strlen(tok),
                      err, "vendor list '%s': at most %d lower-case names", vendor_list, MAX_VENDORS);
        snprintf(vendors[nv++], 32, "%s", tok);
    }
    VLP_CHECK_ARG(nv > 0, err, "no vendor named in '%s'", vendor_list);
    char path[4096];
    snprintf(path, sizeof path, "%s/emoji.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root && je.line < 0) {
        char hint[4400];
        emoji_fetch_hint(dir, hint, sizeof hint);
        VLP_FAIL(err, VLP_ERR_IO, "%s: the emoji corpus is not there (%s)", path, hint);
    }
    VLP_CHECK_FORMAT(root, err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    vlp_err rc = VLP_OK;
    if (!json_is_array(root))
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: not a JSON array", path);
    builder b = {out, 0};
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e) {
        if (rc != VLP_OK) break;
        rc = add_entry(&b, dir, path, i, e, vendors, nv, err);
    }
    json_decref(root);
    if (rc == VLP_OK && out->n == 0)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: no images for '%s'", path, vendor_list);
    if (rc != VLP_OK) emoji_free(out);
    return rc;
}

void emoji_fetch_hint(const char *dir, char *buf, size_t n) {
    char script[4096];
    vlp_error e = {0};
    if (vlp_data_file("scripts/get-data.sh", script, sizeof script, &e) == VLP_OK)
        snprintf(buf, n, "'sh %s %s' fetches it, with npm", script, dir);
    else snprintf(buf, n, "vlp's scripts/get-data.sh %s fetches it, with npm", dir);
}
