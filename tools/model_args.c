#include "model_args.h"

#include <stdio.h>
#include <string.h>

#include "args.h"
#include "blas_env.h"
#include "api/model_internal.h"

/* the options every command shares; returns true when argv[*i] was one */
bool model_arg(int argc, char **argv, int *i, model_args *a, const char *cmd, int *bad) {
    long l;
    if (arg_is(argc, argv, i, "-m", "--model", true, cmd, bad)) a->model = argv[++*i];
    else if (arg_is(argc, argv, i, NULL, "--model-config", true, cmd, bad)) a->o.model_config = argv[++*i];
    else if (arg_is(argc, argv, i, "-v", "--vocab", true, cmd, bad)) a->o.vocab = argv[++*i];
    else if (arg_is(argc, argv, i, NULL, "--quick-gelu", false, cmd, bad)) a->o.quick_gelu = 1;
    else if (arg_is(argc, argv, i, NULL, "--gelu", false, cmd, bad)) a->o.quick_gelu = 0;
    else if (arg_is(argc, argv, i, "-p", "--precision", true, cmd, bad)) {
        const char *p = argv[++*i];
        a->o.bf16 = strcmp(p, "bf16") == 0;
        if (!a->o.bf16 && strcmp(p, "fp32")) {
            fprintf(stderr, "vlp %s: --precision must be fp32 or bf16, not '%s'\n", cmd, p);
            *bad = 1;
        }
    }
    else if (arg_is(argc, argv, i, "-b", "--batch", true, cmd, bad))
        *bad = !arg_long(cmd, "--batch", argv[++*i], 1, 4096, &l), a->o.batch = (int)l;
    else if (arg_is(argc, argv, i, "-t", "--threads", true, cmd, bad))
        *bad = !arg_long(cmd, "--threads", argv[++*i], 0, 4096, &a->threads);
    else return false;
    return true;
}

vlp_model *open_model(const model_args *a, const char *cmd) {
    if (!a->model) {
        fprintf(stderr, "vlp %s: --model is required (try --help)\n", cmd);
        return NULL;
    }
    vlp_set_threads((int)a->threads);
    tool_print_sysinfo(stderr);
    vlp_model *m;
    vlp_error err = {0};
    char buf[1024];
    if (model_load(&m, a->model, &a->o, a->trainable, &err) != VLP_OK) {
        fprintf(stderr, "vlp %s: %s\n", cmd, vlp_error_format(&err, buf, sizeof buf));
        return NULL;
    }
    if (vlp_model_warning(m)) fprintf(stderr, "warning: %s\n", vlp_model_warning(m));
    fprintf(stderr, "%s: %s\n", a->model, vlp_model_describe(m, buf, sizeof buf));
    return m;
}

