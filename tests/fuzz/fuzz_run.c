/* The files of a run directory that `vlp train --resume` reads back, each a
 * round trip (issue 31: a file carried values no flag would take). By the
 * first byte: 'd' the rest as data.json (the data options' record), 'p' as
 * a rank's data position file, anything else the whole input as a training
 * state (safetensors metadata). What reads is written and read back, and
 * must come back the same, or the target aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "train/run.h"
#include "train/runfiles.h"

/* data.json: read into the defaults, written, read again: one record */
static void data_record(const char *text) {
    json_t *in = json_loads(text, 0, NULL);
    run_opts c = run_opts_defaults();
    json_t *rec = NULL, *again = NULL, *rec2 = NULL;
    if (in && run_data_record_read(in, &c, "fuzz/data.json", NULL) == VLP_OK &&
        run_data_record(&c, "fuzz/data.json", &rec, NULL) == VLP_OK) {
        char *t1 = json_dumps(rec, JSON_PRESERVE_ORDER | JSON_COMPACT);
        again = t1 ? json_loads(t1, 0, NULL) : NULL;
        run_opts c2 = run_opts_defaults();
        if (!again || run_data_record_read(again, &c2, "written/data.json", NULL) != VLP_OK ||
            run_data_record(&c2, "written/data.json", &rec2, NULL) != VLP_OK)
            abort();
        char *t2 = json_dumps(rec2, JSON_PRESERVE_ORDER | JSON_COMPACT);
        if (!t2 || strcmp(t1, t2)) abort();
        free(t1), free(t2);
    }
    json_decref(in), json_decref(rec), json_decref(again), json_decref(rec2);
}

static void position(const char *text) {
    data_pos p, back;
    char line[RUN_POS_CAP];
    if (run_pos_parse(text, "fuzz.pos", &p, NULL) != VLP_OK) return;
    run_pos_format(line, p);
    if (run_pos_parse(line, "written.pos", &back, NULL) != VLP_OK || back.epoch != p.epoch || back.index != p.index)
        abort();
}

static void state(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".state");
    st_file *f = NULL, *g = NULL;
    run_state s, back;
    if (!path || st_open(path, &f, NULL) != VLP_OK) return;
    if (run_state_read(f, &s, NULL) == VLP_OK) {
        char out[96];
        snprintf(out, sizeof out, "/tmp/vlp-fuzz-run-%d.state", (int)getpid());
        static const float none[1];
        if (run_state_write(out, &s, none, none, 0, NULL) != VLP_OK || st_open(out, &g, NULL) != VLP_OK ||
            run_state_read(g, &back, NULL) != VLP_OK)
            abort();
        if (back.step != s.step || back.pos.epoch != s.pos.epoch || back.pos.index != s.pos.index ||
            back.world != s.world || strcmp(back.checkpoint, s.checkpoint) || strcmp(back.options, s.options))
            abort();
        st_close(g);
        unlink(out);
    }
    st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size && (data[0] == 'd' || data[0] == 'p')) {
        char *text = fuzz_text(data + 1, size - 1);
        if (text && data[0] == 'd') data_record(text);
        else if (text) position(text);
        free(text);
    } else state(data, size);
    return 0;
}
