/* Exits 0 when a thread can be started and joined: tests/run.sh asks this
 * of an emulator (VLP_TEST_RUNNER) before it runs the threaded tests under
 * it (qemu-user in some sandboxes hangs in clone). */
#include <pthread.h>
#include <stdio.h>

static void *nothing(void *arg) { return arg; }

int main(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0) return 1;
    puts("a thread started and joined");
    return 0;
}
