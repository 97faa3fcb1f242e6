/* vlp models: the architectures vlp knows by name (configs/ of its data
 * directory), as open_clip names them, with their sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "opts.h"
#include "commands.h"
#include "core/datadir.h"
#include "model/clip.h"
#include "model/config_registry.h"

int cmd_models(int argc, char **argv) {
    const cmd_spec spec = {
        .name = "models", .usage = "vlp models",
        .about = "Lists the model architectures vlp ships, by the names open_clip gives them,\n"
                 "with their parameter counts: the names --model-config takes (train, embed,\n"
                 "search, classify, caption, eval) and vlp_model_opts.model_config.\n"
                 "They are the JSON files of configs/ in vlp's data directory\n"
                 "(VLP_DATA_DIR overrides; the directory is printed last)."};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    int n;
    char **names = clip_config_names(&n);
    char dirs[4][4096];
    int nd = vlp_data_dirs(dirs, 4);
    if (!n) {
        fprintf(stderr, "vlp models: no configs/*.json in vlp's data directories (%s%s); install "
                        "vlp (make install) or set VLP_DATA_DIR\n",
                nd ? dirs[0] : "none found", nd > 1 ? ", ..." : "");
        return 1;
    }
    printf("%-24s %9s %6s %6s %6s  %-22s %-22s %s\n", "name", "params", "embed", "image", "patch",
           "vision width x layers", "text width x layers", "activation");
    int rc = 0;
    for (int i = 0; i < n; i++) {
        clip_config c;
        vlp_error err = {0};
        if (clip_config_resolve(names[i], &c, NULL, 0, &err) != VLP_OK) {
            fprintf(stderr, "vlp models: %s\n", err.message);
            rc = 1;
            continue;
        }
        char vis[64], txt[64], extra[96] = "";
        snprintf(vis, sizeof vis, "%d x %d (%d heads)", c.vision.width, c.vision.layers, c.vision.heads);
        snprintf(txt, sizeof txt, "%d x %d (%d heads)", c.text.width, c.text.layers, c.text.heads);
        if (c.multimodal.layers) snprintf(extra, sizeof extra, ", text decoder %d layers", c.multimodal.layers);
        else if (c.mae.layers) snprintf(extra, sizeof extra, ", MAE decoder %d layers", c.mae.layers);
        printf("%-24s %8.1fM %6d %6d %6d  %-22s %-22s %s%s\n", names[i],
               clip_config_param_count(&c) / 1e6, c.embed_dim, c.vision.image_size, c.vision.patch_size,
               vis, txt, c.quick_gelu ? "QuickGELU" : "GELU", extra);
    }
    printf("(from %s/configs)\n", dirs[0]);
    clip_config_names_free(names, n);
    return rc;
}
