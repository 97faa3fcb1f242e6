#!/usr/bin/python3
"""Reference embeddings of a ViT-B-32-shaped CLIP for tests/test_pretrained.c.

The weights come from a formula both sides compute (no 600 MB file in the
repository): tensor `name`, element i is  scale(name) * u  with u uniform in
[-1, 1) from splitmix64(fnv1a64(name) + i). The model is the open_clip
architecture written with PyTorch modules (tests/ref/check_checkpoint.py's
CLIP, QuickGELU as OpenAI's ViT-B-32), run in float64. Stored: the config, two
preprocessed images, the CLIP BPE ids of three texts (from the Python
tokenizer of make_bpe_ref.py) and the L2-normalised embeddings.

usage: /usr/bin/python3 tests/ref/make_pretrained_ref.py [OUTDIR]
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vlpt  # noqa: E402
from check_checkpoint import CLIP  # noqa: E402
from make_bpe_ref import Tokenizer  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else HERE
CFG = {"embed_dim": 512, "quick_gelu": True,
       "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12, "mlp_ratio": 4.0},
       "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12, "mlp_ratio": 4.0}}
TEXTS = ["a photo of a cat", "a diagram of a vision-language model, drawn by hand", "東京の夜景 🌃"]
M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & M64
    return h


def splitmix_uniform(seed, n):
    """u in [-1, 1) from splitmix64(seed + i + 1), i = 0..n-1 (vectorised, wrapping uint64)."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53) * 2.0 - 1.0


def scale(name, shape):
    if name == "logit_scale":
        return None
    if "ln_" in name or "ln_final" in name:
        return 0.1  # around 1 for weights (added below), around 0 for biases
    if name.endswith("bias"):
        return 0.02
    if "embedding" in name:
        return 0.02
    fan_in = shape[-1] if len(shape) == 2 else int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
    if name in ("visual.proj", "text_projection"):
        fan_in = shape[0]
    return fan_in ** -0.5 * 1.7  # uniform[-a, a] with std a / sqrt(3) ~ fan_in^-0.5


def formula_weights(model):
    sd = {}
    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        n = int(np.prod(shape)) if shape else 1
        if name == "logit_scale":
            v = np.array(np.log(100.0), dtype=np.float32)
        else:
            v = (scale(name, shape) * splitmix_uniform(fnv1a64(name), n)).astype(np.float32)
            if ("ln_" in name or "ln_final" in name) and name.endswith("weight"):
                v = (1.0 + v).astype(np.float32)
            v = v.reshape(shape)
        sd[name] = torch.from_numpy(np.array(v, dtype=np.float32)).double()
    return sd


def main():
    model = CLIP(CFG).double()
    model.load_state_dict(formula_weights(model), strict=True)
    g = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 224, 224, generator=g, dtype=torch.float64).float()
    tok = Tokenizer(os.path.join(HERE, "../../vocab/bpe_simple_vocab_16e6.txt.gz"))
    ids = torch.tensor([tok.tokenize(t) for t in TEXTS], dtype=torch.long)
    with torch.no_grad():
        fi = torch.nn.functional.normalize(model.visual(images.double()), dim=-1)
        ft = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
    vlpt.write(os.path.join(OUT, "pretrained.vlpt"), {
        "images": images.numpy(), "ids": ids.numpy().astype(np.int32),
        "image_embeddings": fi.float().numpy(), "text_embeddings": ft.float().numpy()})
    print(f"wrote {OUT}/pretrained.vlpt: 2 images, {len(TEXTS)} texts, ViT-B-32 formula weights")


if __name__ == "__main__":
    main()
