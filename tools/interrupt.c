#include "interrupt.h"

#include <signal.h>
#include <stddef.h>

static volatile sig_atomic_t stop_requested; /* the process's, as the signals are */

static void on_signal(int sig) {
    stop_requested = 1;
    signal(sig, SIG_DFL); /* a second one ends the process at once */
}

void interrupt_catch(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool interrupted(void) { return stop_requested != 0; }

void interrupt_request(void) { stop_requested = 1; }
