/* Two small open-addressing hash maps the tokenizers need: string → int32
 * (keys copied) and u64 → (int32, int32). Tables double when 3/4 full. Put
 * overwrites, as Python's dict does; nothing is ever removed. */
#ifndef VLP_CORE_HASHMAP_H
#define VLP_CORE_HASHMAP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct str_map {
    struct str_entry *slots;
    size_t cap, count;
} str_map;

bool str_map_init(str_map *m, size_t expected);
void str_map_free(str_map *m);
/* key of len bytes (need not be NUL-terminated); false when out of memory */
bool str_map_put(str_map *m, const char *key, size_t len, int32_t value);
/* the value, or -1 */
int32_t str_map_get(const str_map *m, const char *key, size_t len);

typedef struct u64_map {
    struct u64_entry *slots;
    size_t cap, count;
} u64_map;

bool u64_map_init(u64_map *m, size_t expected);
void u64_map_free(u64_map *m);
bool u64_map_put(u64_map *m, uint64_t key, int32_t a, int32_t b);
/* true when present; *a, *b receive the values */
bool u64_map_get(const u64_map *m, uint64_t key, int32_t *a, int32_t *b);
/* the values of key, inserting (a0, b0) when absent; NULL when out of memory */
int32_t *u64_map_slot(u64_map *m, uint64_t key, int32_t a0, int32_t b0);
#endif
