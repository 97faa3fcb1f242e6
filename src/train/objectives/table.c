/* The built-in objectives: adding one is its file plus a line here. */
#include "train/objective.h"

#include <stdio.h>
#include <string.h>

extern const objective objective_clip, objective_siglip, objective_filip, objective_coca,
    objective_textlm, objective_mae, objective_clip_mae, objective_itc_itm_mlm;

const objective *const vlp_objectives[] = {
    &objective_clip,   /* the default */
    &objective_siglip, &objective_filip, &objective_coca,
    &objective_textlm, &objective_mae,   &objective_clip_mae, &objective_itc_itm_mlm,
    NULL,
};

const objective *objective_find(const char *name) {
    for (int i = 0; name && vlp_objectives[i]; i++)
        if (!strcmp(vlp_objectives[i]->name, name)) return vlp_objectives[i];
    return NULL;
}

const char *objective_names(char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; vlp_objectives[i] && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", vlp_objectives[i]->name);
    return buf;
}

vlp_err objective_check_config(const objective *o, const clip_config *cfg, const char *what,
                               vlp_error *err) {
    const char *missing = o->requires ? o->requires(cfg) : NULL;
    VLP_CHECK_ARG(!missing, err, "the %s objective needs a model with %s%s%s", o->name, missing,
                  what ? "; " : "", what ? what : "");
    return VLP_OK;
}
