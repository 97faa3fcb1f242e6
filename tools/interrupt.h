/* Ctrl-C and SIGTERM for the commands whose work writes as it goes (vlp
 * train, vlp data shards/filter/balance/dedup): the first signal asks the
 * command to stop; its loops see interrupted() between samples or steps,
 * take the error path that removes every temporary and partial output
 * (train saves a checkpoint instead), and the command exits 130. A second
 * signal ends the process at once. Commands that write only at the end
 * (embed, eval, adapt, quantize, ...) keep the default: killed at once, their
 * output never begun. The flag is the process's, as signals are. */
#ifndef VLP_TOOLS_INTERRUPT_H
#define VLP_TOOLS_INTERRUPT_H
#include <stdbool.h>

/* installs the handlers for SIGINT and SIGTERM */
void interrupt_catch(void);
bool interrupted(void);
/* stops as a signal would (another rank of the job was interrupted) */
void interrupt_request(void);
/* the exit status of an interrupted command (128 + SIGINT) */
#define INTERRUPT_EXIT 130
#endif
