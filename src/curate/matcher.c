#include "curate/matcher.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

typedef struct edge {
    uint8_t byte;
    int32_t to;
} edge;

struct matcher {
    int npat;
    int64_t nnodes;
    /* the trie, children sorted by byte: node v's are edges[cbeg[v] .. cbeg[v+1]) */
    int64_t *cbeg;     // (nnodes + 1)
    edge *edges;       // (nnodes - 1)
    int32_t *fail;     // (nnodes) the longest proper suffix that is a trie node
    int32_t *dict;     // (nnodes) the nearest node on the fail chain ending a pattern, or -1
    int32_t *term;     // (nnodes) the first pattern ending here, or -1
    int32_t *same;     // (npat) the next pattern equal to this one, or -1
    int32_t root_next[256]; // the root's transitions, complete (0 = stay at the root)
};

/* the child of v by byte c, or -1 */
static int32_t child(const matcher *m, int32_t v, uint8_t c) {
    int64_t lo = m->cbeg[v], hi = m->cbeg[v + 1];
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (m->edges[mid].byte < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->cbeg[v + 1] && m->edges[lo].byte == c ? m->edges[lo].to : -1;
}

/* the build's trie: children as linked lists, then sorted into edges */
typedef struct build {
    int32_t *first, *next; // (cap) first child, next sibling
    uint8_t *byte;         // (cap) the byte into the node
    int32_t *term;
    int64_t n, cap;
} build;

static bool grow(build *b) {
    int64_t cap = b->cap ? 2 * b->cap : 1024;
    int32_t *f = realloc(b->first, sizeof(int32_t) * (size_t)cap);
    if (f) b->first = f;
    int32_t *nx = realloc(b->next, sizeof(int32_t) * (size_t)cap);
    if (nx) b->next = nx;
    uint8_t *by = realloc(b->byte, (size_t)cap);
    if (by) b->byte = by;
    int32_t *t = realloc(b->term, sizeof(int32_t) * (size_t)cap);
    if (t) b->term = t;
    if (!f || !nx || !by || !t) return false;
    b->cap = cap;
    return true;
}

static int32_t add_node(build *b, uint8_t c) {
    if (b->n == b->cap && !grow(b)) return -1;
    int64_t v = b->n++;
    b->first[v] = b->next[v] = b->term[v] = -1;
    b->byte[v] = c;
    return (int32_t)v;
}

static int cmp_edge(const void *a, const void *b) {
    return (int)((const edge *)a)->byte - (int)((const edge *)b)->byte;
}

static void free_build(build *b) { free(b->first), free(b->next), free(b->byte), free(b->term); }

vlp_err matcher_create(matcher **out, const char *const *patterns, int n, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(n >= 0 && (n == 0 || patterns), err, "matcher: %d patterns", n);
    matcher *m = calloc(1, sizeof *m);
    VLP_CHECK_ALLOC(m, err, sizeof *m);
    build b = {0};
    vlp_err rc = VLP_OK;
    m->npat = n;
    m->same = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!m->same || add_node(&b, 0) < 0) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "matcher trie");
    for (int p = 0; rc == VLP_OK && p < n; p++) {
        const uint8_t *s = (const uint8_t *)patterns[p];
        if (!s || !*s) {
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "matcher: pattern %d is empty", p);
            break;
        }
        int32_t v = 0;
        for (; *s && rc == VLP_OK; s++) {
            int32_t c = b.first[v];
            while (c >= 0 && b.byte[c] != *s) c = b.next[c];
            if (c < 0) {
                if ((c = add_node(&b, *s)) < 0) {
                    rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "matcher trie of %lld nodes",
                                       (long long)b.n);
                    break;
                }
                b.next[c] = b.first[v], b.first[v] = c;
            }
            v = c;
        }
        if (rc != VLP_OK) break;
        if (b.n > INT32_MAX / 2) {
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "matcher: more than 2^30 trie nodes");
            break;
        }
        m->same[p] = b.term[v], b.term[v] = p; /* equal patterns chained */
    }
    if (rc == VLP_OK) {
        m->nnodes = b.n;
        m->cbeg = malloc(sizeof(int64_t) * (size_t)(b.n + 1));
        m->edges = malloc(sizeof(edge) * (size_t)(b.n > 1 ? b.n - 1 : 1));
        m->fail = malloc(sizeof(int32_t) * (size_t)b.n);
        m->dict = malloc(sizeof(int32_t) * (size_t)b.n);
        if (!m->cbeg || !m->edges || !m->fail || !m->dict)
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "matcher of %lld nodes", (long long)b.n);
    }
    if (rc == VLP_OK) {
        /* children into sorted runs of edges */
        int64_t e = 0;
        for (int64_t v = 0; v < b.n; v++) {
            m->cbeg[v] = e;
            for (int32_t c = b.first[v]; c >= 0; c = b.next[c]) m->edges[e++] = (edge){b.byte[c], c};
            qsort(m->edges + m->cbeg[v], (size_t)(e - m->cbeg[v]), sizeof(edge), cmp_edge);
        }
        m->cbeg[b.n] = e;
        m->term = b.term, b.term = NULL;
        /* failure and dictionary links, breadth first (a node's fail is shallower) */
        int32_t *queue = b.first; /* reused: the lists are no longer needed */
        int64_t head = 0, tail = 0;
        m->fail[0] = 0, m->dict[0] = -1;
        for (int c = 0; c < 256; c++) m->root_next[c] = 0;
        for (int64_t k = m->cbeg[0]; k < m->cbeg[1]; k++) {
            int32_t v = m->edges[k].to;
            m->root_next[m->edges[k].byte] = v;
            m->fail[v] = 0, m->dict[v] = -1;
            queue[tail++] = v;
        }
        while (head < tail) {
            int32_t u = queue[head++];
            for (int64_t k = m->cbeg[u]; k < m->cbeg[u + 1]; k++) {
                int32_t v = m->edges[k].to;
                uint8_t c = m->edges[k].byte;
                int32_t f = m->fail[u], t;
                while (f && (t = child(m, f, c)) < 0) f = m->fail[f];
                t = f ? child(m, f, c) : m->root_next[c];
                m->fail[v] = t >= 0 ? t : 0;
                int32_t fv = m->fail[v];
                m->dict[v] = m->term[fv] >= 0 ? fv : m->dict[fv];
                queue[tail++] = v;
            }
        }
    }
    free_build(&b);
    if (rc != VLP_OK) {
        matcher_free(m);
        return rc;
    }
    *out = m;
    return VLP_OK;
}

void matcher_free(matcher *m) {
    if (!m) return;
    free(m->cbeg), free(m->edges), free(m->fail), free(m->dict), free(m->term), free(m->same);
    free(m);
}

int64_t matcher_nodes(const matcher *m) { return m->nnodes; }

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void matcher_find(const matcher *m, const char *text, size_t len, int32_t *ids, int cap, int *n,
                  uint32_t *scratch, uint32_t *stamp) {
    *n = 0;
    if (++*stamp == 0) { /* the counter wrapped: stamps of 2^32 calls ago would match */
        memset(scratch, 0, sizeof(uint32_t) * (size_t)m->npat);
        *stamp = 1;
    }
    const uint32_t mark = *stamp;
    int32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)text[i];
        int32_t t;
        while (v && (t = child(m, v, c)) < 0) v = m->fail[v];
        v = v ? child(m, v, c) : m->root_next[c];
        if (v < 0) v = 0; /* unreachable: the loop above stops at a node with the child or at the root */
        for (int32_t s = m->term[v] >= 0 ? v : m->dict[v]; s >= 0; s = m->dict[s])
            for (int32_t p = m->term[s]; p >= 0; p = m->same[p]) {
                if (scratch[p] == mark) continue;
                scratch[p] = mark;
                if (*n < cap) ids[*n] = p;
                ++*n;
            }
    }
    qsort(ids, (size_t)(*n < cap ? *n : cap), sizeof(int32_t), cmp_i32);
}

char *metaclip_spacing(const char *text, size_t *len) {
    size_t n = strlen(text), extra = 0;
    for (size_t i = 0; i < n; i++)
        if (strchr(",.;:?!`", text[i]) && text[i]) extra += 2;
    char *out = malloc(n + extra + 3);
    if (!out) return NULL;
    size_t k = 0;
    out[k++] = ' ';
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (strchr(",.;:?!`", c)) out[k++] = ' ', out[k++] = c, out[k++] = ' ';
        else out[k++] = c == '\t' || c == '\n' || c == '\r' ? ' ' : c;
    }
    out[k++] = ' ';
    out[k] = '\0';
    *len = k;
    return out;
}

char *metaclip_entry(const char *entry) {
    size_t n = strlen(entry);
    char *out = malloc(n + 3);
    if (!out) return NULL;
    out[0] = ' ';
    memcpy(out + 1, entry, n);
    out[n + 1] = ' ', out[n + 2] = '\0';
    return out;
}
