#!/usr/bin/python3
"""References for tests/test_c_api.c, which sees only include/vlp.h: a small
CLIP (open_clip structure, tests/ref/check_checkpoint.py's module) with random
weights saved as tests/ref/api_model.safetensors (config in the metadata, as
vlp writes it), a 2-merge BPE file, and in tests/ref/api_expected.txt the ids
of three texts and the embeddings of those texts and of img_src.png /
img_src.jpg after CLIP's eval preprocessing (PIL bicubic, center crop, OpenAI
mean/std).

usage: /usr/bin/python3 tests/ref/make_api_ref.py [OUTDIR]
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_checkpoint import CLIP  # noqa: E402
from make_bpe_ref import Tokenizer  # noqa: E402
from make_image_ref import eval_transform  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else HERE
CFG = {"embed_dim": 16, "quick_gelu": False,
       "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "heads": 2, "mlp_ratio": 4.0},
       "text_cfg": {"context_length": 12, "vocab_size": 516, "width": 32, "heads": 2, "layers": 2, "mlp_ratio": 4.0}}
TEXTS = ["the cat", "A photo of THE dog, then the end!", ""]


def save_safetensors(path, sd, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k, v in sd.items():
        b = v.detach().float().contiguous().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_expected(model, merges, path):
    """the ids of TEXTS and the float64 embeddings of TEXTS and the two
    reference images, one line each ("ids ...", "image ...", "text ...")"""
    tok = Tokenizer(merges)
    ctx = model.context_length
    ids = torch.tensor([tok.tokenize(t, ctx) for t in TEXTS])
    size = model.visual.positional_embedding.shape[0] - 1
    size = int(round(size ** 0.5)) * model.visual.conv1.kernel_size[0]
    imgs = torch.from_numpy(np.stack([eval_transform(Image.open(os.path.join(HERE, n)).convert("RGB"), size)
                                      for n in ("img_src.png", "img_src.jpg")]))
    model = model.double()
    with torch.no_grad():
        fi = torch.nn.functional.normalize(model.visual(imgs.double()), dim=-1)
        ft = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
    with open(path, "w") as f:
        for row in ids.tolist():
            f.write("ids " + " ".join(map(str, row)) + "\n")
        for row in fi.tolist():
            f.write("image " + " ".join(f"{x:.9g}" for x in row) + "\n")
        for row in ft.tolist():
            f.write("text " + " ".join(f"{x:.9g}" for x in row) + "\n")


def main():
    torch.manual_seed(11)
    model = CLIP(CFG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.dim() < 2 else p.shape[-1] ** -0.5))
            if "ln_" in name and name.endswith("weight"):
                p.add_(1.0)
    save_safetensors(os.path.join(OUT, "api_model.safetensors"), model.state_dict(),
                     {"format": "pt", "vlp.config": json.dumps(CFG)})
    merges = os.path.join(OUT, "api_merges.txt")
    with open(merges, "w") as f:
        f.write("#version: 0.2\nt h\nth e</w>")  # no final newline: open_clip would read '' as a merge
    tok = Tokenizer(merges)
    assert len(tok.encoder) == 516
    write_expected(model, merges, os.path.join(OUT, "api_expected.txt"))
    print(f"wrote api_model.safetensors, api_merges.txt, api_expected.txt to {OUT}")


if __name__ == "__main__":
    main()
