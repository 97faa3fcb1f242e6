#include "core/hashmap.h"

#include <stdlib.h>
#include <string.h>

struct str_entry {
    char *key;
    size_t len;
    int32_t value;
};

struct u64_entry {
    uint64_t key; // stored as key + 1; 0 = empty
    int32_t v[2];
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t pow2_for(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    return cap;
}

bool str_map_init(str_map *m, size_t expected) {
    m->cap = pow2_for(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots != NULL;
}

void str_map_free(str_map *m) {
    for (size_t i = 0; m->slots && i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static struct str_entry *str_find(const str_map *m, const char *key, size_t len) {
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        struct str_entry *e = &m->slots[i];
        if (!e->key || (e->len == len && !memcmp(e->key, key, len))) return e;
    }
}

static bool str_grow(str_map *m) {
    str_map bigger = {calloc(m->cap * 2, sizeof *m->slots), m->cap * 2, m->count};
    if (!bigger.slots) return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) *str_find(&bigger, m->slots[i].key, m->slots[i].len) = m->slots[i];
    free(m->slots);
    *m = bigger;
    return true;
}

bool str_map_put(str_map *m, const char *key, size_t len, int32_t value) {
    if ((m->count + 1) * 4 > m->cap * 3 && !str_grow(m)) return false;
    struct str_entry *e = str_find(m, key, len);
    if (!e->key) {
        if (!(e->key = malloc(len + 1))) return false;
        memcpy(e->key, key, len);
        e->key[len] = '\0';
        e->len = len;
        m->count++;
    }
    e->value = value;
    return true;
}

int32_t str_map_get(const str_map *m, const char *key, size_t len) {
    const struct str_entry *e = str_find(m, key, len);
    return e->key ? e->value : -1;
}

bool u64_map_init(u64_map *m, size_t expected) {
    m->cap = pow2_for(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots != NULL;
}

void u64_map_free(u64_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static struct u64_entry *u64_find(const u64_map *m, uint64_t stored) {
    size_t mask = m->cap - 1;
    for (size_t i = hash_u64(stored) & mask;; i = (i + 1) & mask)
        if (!m->slots[i].key || m->slots[i].key == stored) return &m->slots[i];
}

static bool u64_grow(u64_map *m) {
    u64_map bigger = {calloc(m->cap * 2, sizeof *m->slots), m->cap * 2, m->count};
    if (!bigger.slots) return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) *u64_find(&bigger, m->slots[i].key) = m->slots[i];
    free(m->slots);
    *m = bigger;
    return true;
}

int32_t *u64_map_slot(u64_map *m, uint64_t key, int32_t a0, int32_t b0) {
    if ((m->count + 1) * 4 > m->cap * 3 && !u64_grow(m)) return NULL;
    struct u64_entry *e = u64_find(m, key + 1);
    if (!e->key) {
        e->key = key + 1;
        e->v[0] = a0, e->v[1] = b0;
        m->count++;
    }
    return e->v;
}

bool u64_map_put(u64_map *m, uint64_t key, int32_t a, int32_t b) {
    int32_t *v = u64_map_slot(m, key, a, b);
    if (!v) return false;
    v[0] = a, v[1] = b;
    return true;
}

bool u64_map_get(const u64_map *m, uint64_t key, int32_t *a, int32_t *b) {
    const struct u64_entry *e = u64_find(m, key + 1);
    if (!e->key) return false;
    *a = e->v[0], *b = e->v[1];
    return true;
}
