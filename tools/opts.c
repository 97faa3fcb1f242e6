#include "opts.h"
#include "args.h"

#include <stdlib.h>
#include <string.h>

static void print_help(const char *cmd, const char *usage, const char *about, const cli_opt *opts, int n,
                       const char *extra_help) {
    printf("usage: %s\n%s\n\n", usage, about);
    for (int k = 0; k < n; k++) {
        const cli_opt *o = &opts[k];
        char head[96], text[1024];
        snprintf(head, sizeof head, "  %s%s%s%s%s", o->shrt ? o->shrt : "  ", o->shrt ? ", " : "  ", o->lng,
                 o->arg ? " " : "", o->arg ? o->arg : "");
        size_t m = (size_t)snprintf(text, sizeof text, "%s", o->help);
        if (o->required) snprintf(text + m, sizeof text - m, " (required)");
        else if (o->kind == OPT_STR && *(const char **)o->dst)
            snprintf(text + m, sizeof text - m, " (default %s)", *(const char **)o->dst);
        else if (o->kind == OPT_LONG) snprintf(text + m, sizeof text - m, " (default %ld)", *(long *)o->dst);
        else if (o->kind == OPT_DBL) snprintf(text + m, sizeof text - m, " (default %g)", *(double *)o->dst);
        help_item(stdout, head, text);
    }
    help_item(stdout, "  -h, --help", "this text");
    if (extra_help) fputs(extra_help, stdout);
    (void)cmd;
}

int opts_parse(const char *cmd, const char *usage, const char *about, const cli_opt *opts, int n,
               opt_extra extra, void *extra_ctx, const char *extra_help, int argc, char **argv) {
    bool *given = calloc((size_t)n + 1, sizeof(bool));
    if (!given) return fprintf(stderr, "vlp %s: out of memory\n", cmd), 2;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            print_help(cmd, usage, about, opts, n, extra_help);
            free(given);
            return 1;
        }
        int k = 0;
        for (; k < n; k++)
            if ((opts[k].shrt && !strcmp(argv[i], opts[k].shrt)) || !strcmp(argv[i], opts[k].lng)) break;
        if (k == n) {
            if (extra && extra(extra_ctx, argc, argv, &i, &bad)) continue;
            if (!bad) fprintf(stderr, "vlp %s: unknown option '%s' (try --help)\n", cmd, argv[i]), bad = 1;
            break;
        }
        const cli_opt *o = &opts[k];
        given[k] = true;
        if (o->kind == OPT_FLAG) {
            *(bool *)o->dst = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlp %s: %s needs a value (try --help)\n", cmd, argv[i]);
            bad = 1;
            break;
        }
        const char *v = argv[++i];
        if (o->kind == OPT_STR) *(const char **)o->dst = v;
        else if (o->kind == OPT_LONG) bad = !arg_long(cmd, o->lng, v, (long)o->lo, (long)o->hi, (long *)o->dst);
        else bad = !arg_double(cmd, o->lng, v, o->lo, o->hi, (double *)o->dst);
    }
    for (int k = 0; k < n && !bad; k++)
        if (opts[k].required && !given[k])
            fprintf(stderr, "vlp %s: %s is required (try --help)\n", cmd, opts[k].lng), bad = 1;
    free(given);
    return bad ? 2 : 0;
}
