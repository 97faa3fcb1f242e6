/* The CLI's commands, one file each; main() in vlp.c dispatches. */
#ifndef VLP_TOOLS_COMMANDS_H
#define VLP_TOOLS_COMMANDS_H
int cmd_train(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_data(int argc, char **argv);
/* vlp data's curation tools (tools/data_*.c) */
int data_balance(int argc, char **argv);
int data_filter(int argc, char **argv);
int data_dedup(int argc, char **argv);
int data_concepts(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_match(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_adapt(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
#endif
