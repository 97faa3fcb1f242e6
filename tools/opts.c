#include "opts.h"
#include "args.h"
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

void opts_help_table(FILE *fp, const opt_desc *t, int n, const void *defaults) {
    for (int i = 0; i < n; i++) {
        if (t[i].flags & OPT_HIDDEN) continue;
        char head[96], text[1024];
        opt_help_head(&t[i], head, sizeof head);
        opt_help_text(&t[i], (t[i].flags & OPT_ALIAS) ? NULL : defaults, text, sizeof text);
        help_item(fp, head, text);
    }
}

static void print_help(const cmd_spec *c) {
    printf("usage: %s\n%s\n\n", c->usage, c->about);
    for (int g = 0; g < c->ngroups; g++)
        opts_help_table(stdout, c->groups[g].t, c->groups[g].n, c->groups[g].base);
    if (c->help_more) c->help_more(stdout);
    help_item(stdout, "      --verbose", "errors with the source location of the check that failed (VLP_VERBOSE=1)");
    help_item(stdout, "  -h, --help", "this text");
    if (c->extra_help) fputs(c->extra_help, stdout);
}

/* the entry and its group for a flag */
static const opt_desc *lookup(const cmd_spec *c, const char *flag, int *group) {
    for (int g = 0; g < c->ngroups; g++) {
        const opt_desc *t = c->groups[g].t;
        for (int k = 0; k < c->groups[g].n; k++)
            if ((t[k].flag && !strcmp(flag, t[k].flag)) || (t[k].shrt && !strcmp(flag, t[k].shrt))) {
                *group = g;
                return &t[k];
            }
    }
    return NULL;
}

/* Flags renamed so that each has one meaning (docs/cli.md): an old one is
 * answered with its new name where the command has it, for scripts written
 * before */
static const char *const RENAMED[][2] = {
    {"--score-model", "--model"}, {"--eps", "--dedup-eps"},     {"--per-class-json", "--class-accuracy"},
    {"-b", "--encode-batch"},     {"--batch", "--encode-batch"}, {"--data", "--emoji-dir"},
    {"-d", "--emoji-dir"},        {"-i", "--data"},              {"-i", "--captions"},
    {"-k", "--shots"},            {"-k", "--beam"},              {"-n", "--names"},
    {"-n", "--samples-per-shard"}, {"-n", "--merges"},           {"-m", "--merges"},
    {"-m", "--metadata"},         {"-c", "--context-length"},    {"-c", "--concepts"},
    {"-t", "--t"},
};

static bool is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

/* --list-options (not in --help: for docs/cli.md and the test that a flag
 * means one thing in every command): one line an option, tab-separated:
 * command, short flag or "-", long flag, value name or "-", what the value
 * is, its default, its help line */
static void list_options(const cmd_spec *c) {
    for (int g = 0; g < c->ngroups; g++)
        for (int k = 0; k < c->groups[g].n; k++) {
            const opt_desc *d = &c->groups[g].t[k];
            char def[512] = "-";
            if (!(d->flags & OPT_ALIAS) && c->groups[g].base) opt_format(d, c->groups[g].base, def, sizeof def);
            if (!def[0]) snprintf(def, sizeof def, "-");
            printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c->name, d->shrt ? d->shrt : "-", d->flag,
                   d->arg ? d->arg : "-", d->type->what, def, d->help);
        }
}

/* the flat index of a group's entry, and the entry given before that sets
 * the same field (an alias, --gelu after --quick-gelu, or itself), or -1 */
static int flat_index(const cmd_spec *c, int g, int k) {
    int off = 0;
    for (int h = 0; h < g; h++) off += c->groups[h].n;
    return off + k;
}
static const opt_desc *given_same_field(const cmd_spec *c, const bool *given, const opt_desc *d, int g) {
    for (int k = 0; k < c->groups[g].n; k++)
        if (given[flat_index(c, g, k)] && c->groups[g].t[k].off == d->off) return &c->groups[g].t[k];
    return NULL;
}

/* whether the flag (long) was given */
static bool flag_given(const cmd_spec *c, const bool *given, const char *flag) {
    int g = 0;
    const opt_desc *d = lookup(c, flag, &g);
    return d && given[flat_index(c, g, (int)(d - c->groups[g].t))];
}

int opts_parse(const cmd_spec *c, int argc, char **argv, char **words, int *nwords) {
    const char *cmd = c->name;
    if (nwords) *nwords = 0;
    /* --help first: the defaults as the tables hold them, whatever comes before */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (is_help(argv[i])) {
            print_help(c);
            return 1;
        }
        if (!strcmp(argv[i], "--verbose")) setenv("VLP_VERBOSE", "1", 1); /* read by tool_error_text */
        if (!strcmp(argv[i], "--list-options")) {
            list_options(c);
            return 1;
        }
    }
    int total = 0;
    for (int g = 0; g < c->ngroups; g++) total += c->groups[g].n;
    bool *given = calloc((size_t)total + 1, sizeof(bool));
    if (!given) return fprintf(stderr, "vlp %s: out of memory\n", cmd), 2;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (c->positional && !strcmp(a, "--")) {
            while (++i < argc) words[(*nwords)++] = argv[i];
            break;
        }
        if (c->positional && (a[0] != '-' || !a[1])) {
            words[(*nwords)++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--verbose")) continue; /* seen above */
        int g = 0;
        const opt_desc *d = lookup(c, a, &g);
        bool extra = !d && c->extra_is && c->extra_is(a);
        if (!d && !extra) {
            int rg;
            for (size_t r = 0; r < sizeof RENAMED / sizeof *RENAMED; r++)
                if (!strcmp(a, RENAMED[r][0]) && lookup(c, RENAMED[r][1], &rg)) {
                    fprintf(stderr, "vlp %s: unknown option '%s': it is %s now (docs/cli.md)\n", cmd, a, RENAMED[r][1]);
                    bad = 1;
                    break;
                }
            if (bad) break;
            fprintf(stderr, "vlp %s: unknown option '%s' (try --help)\n", cmd, a);
            bad = 1;
            break;
        }
        /* one value a field: a repeated option, or two that set one thing
         * (--gelu and --quick-gelu), would leave only the last standing */
        const opt_desc *before = d ? given_same_field(c, given, d, g) : NULL;
        if (before && before == d) {
            fprintf(stderr, "vlp %s: %s is given twice; give it once\n", cmd, d->flag);
            bad = 1;
            break;
        }
        if (before) {
            fprintf(stderr, "vlp %s: %s and %s set the same thing; give one\n", cmd, before->flag, d->flag);
            bad = 1;
            break;
        }
        const char *value = NULL;
        if (extra || !d->type->is_switch) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vlp %s: %s needs a value (try --help)\n", cmd, a);
                bad = 1;
                break;
            }
            value = argv[++i];
        }
        vlp_error err = {0};
        vlp_err rc = extra ? c->extra_set(c->ctx, a, value, &err) : opt_set(d, c->groups[g].base, value, &err);
        if (rc != VLP_OK) {
            fprintf(stderr, "vlp %s: %s\n", cmd, err.message);
            bad = 1;
            break;
        }
        if (d) {
            given[flat_index(c, g, (int)(d - c->groups[g].t))] = true;
            if (c->on_set) c->on_set(c->ctx, d);
        }
    }
    for (int g = 0; g < c->ngroups && !bad; g++)
        for (int k = 0; k < c->groups[g].n && !bad; k++) {
            const opt_desc *d = &c->groups[g].t[k];
            if ((d->flags & OPT_REQUIRED) && !given_same_field(c, given, d, g))
                fprintf(stderr, "vlp %s: %s is required (try --help)\n", cmd, d->flag), bad = 1;
        }
    for (int p = 0; c->exclusive && c->exclusive[p][0] && !bad; p++)
        if (flag_given(c, given, c->exclusive[p][0]) && flag_given(c, given, c->exclusive[p][1]))
            fprintf(stderr, "vlp %s: %s and %s exclude each other; give one\n", cmd, c->exclusive[p][0],
                    c->exclusive[p][1]),
                bad = 1;
    free(given);
    return bad ? 2 : 0;
}

void opts_help_data_kinds(FILE *fp) {
    const char *names[16], *specs[16];
    int n = stream_kinds(names, specs, 16);
    fprintf(fp, "A set (SPEC, SET) is one of:\n");
    for (int i = 0; i < n; i++) {
        char head[64];
        snprintf(head, sizeof head, "    %s", names[i]);
        help_item(fp, head, specs[i]);
    }
}
