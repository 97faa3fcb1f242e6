#!/usr/bin/python3
"""References for the head-width test of tests/test_c_api.c: a small CLIP with
open_clip's structure (check_checkpoint.py's module) whose heads are not 64
wide in either tower — vision width 64 with head_width 16 (4 heads), text
width 64 with 4 heads (16 wide) — saved WITHOUT a config in the metadata, as
open_clip's own state dicts are, so the shapes alone cannot tell its heads.

  tests/ref/headwidth_model.safetensors  the weights (open_clip names, F32)
  tests/ref/headwidth.json               its config in open_clip's fields
                                         (vision_cfg.head_width, text_cfg.heads)
  tests/ref/headwidth_expected.txt       ids, image and text embeddings, as
                                         api_expected.txt (float64 forward)

The tokenizer is api_merges.txt (make_api_ref.py), the images img_src.png/jpg.

usage: /usr/bin/python3 tests/ref/make_headwidth_ref.py [OUTDIR]
"""
import copy
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_checkpoint import CLIP  # noqa: E402
from make_api_ref import save_safetensors, write_expected  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else HERE
CFG = {"embed_dim": 16,
       "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 16,
                      "mlp_ratio": 2.0},
       "text_cfg": {"context_length": 12, "vocab_size": 516, "width": 64, "heads": 4, "layers": 2,
                    "mlp_ratio": 2.0}}


def module_config(cfg):
    """check_checkpoint's CLIP reads vision_cfg.heads: open_clip's width // head_width"""
    c = copy.deepcopy(cfg)
    v = c["vision_cfg"]
    v["heads"] = v["width"] // v.pop("head_width")
    return c


def main():
    torch.manual_seed(15)
    model = CLIP(module_config(CFG))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.dim() < 2 else p.shape[-1] ** -0.5))
            if "ln_" in name and name.endswith("weight"):
                p.add_(1.0)
    save_safetensors(os.path.join(OUT, "headwidth_model.safetensors"), model.state_dict(), {"format": "pt"})
    with open(os.path.join(OUT, "headwidth.json"), "w") as f:
        f.write(json.dumps(CFG, indent=4) + "\n")
    write_expected(model, os.path.join(HERE, "api_merges.txt"), os.path.join(OUT, "headwidth_expected.txt"))
    print(f"wrote headwidth_model.safetensors, headwidth.json, headwidth_expected.txt to {OUT}")


if __name__ == "__main__":
    main()
