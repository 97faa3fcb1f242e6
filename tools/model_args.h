/* The options of every command that loads a model (embed, search, classify,
 * caption, eval, quantize, adapt, data filter/dedup): --model,
 * --model-config, --vocab, the activation, batch, threads and precision;
 * one table (a group of the command's opts_parse), one loader. */
#ifndef VLP_TOOLS_MODEL_ARGS_H
#define VLP_TOOLS_MODEL_ARGS_H
#include <stdbool.h>

#include "opts.h"
#include "vlp.h"

typedef struct model_args {
    const char *model;
    vlp_model_opts o;
    long threads;
    bool trainable; // the towers can run their backward (vlp adapt)
} model_args;

/* the table over model_args */
extern const opt_desc model_opt_table[];
extern const int model_opt_count;
model_args model_args_default(void);
/* the group of a command's parse */
#define MODEL_GROUP(a) {model_opt_table, model_opt_count, (a)}

/* sets the threads, prints the system line, loads the model and says what it
 * is (and any warning); NULL after a message naming the fault */
vlp_model *open_model(const model_args *a, const char *cmd);
#endif
