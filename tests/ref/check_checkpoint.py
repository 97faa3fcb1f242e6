#!/usr/bin/python3
"""Loads a vlp checkpoint into a PyTorch CLIP built with open_clip's module
structure (the same classes and attribute names as open_clip.model.CLIP with
VisionTransformer and the causal text Transformer, registered in the same
order), so its state_dict() has open_clip's keys, shapes and order.

  check_checkpoint.py CKPT.safetensors   compare keys/shapes/order, then
                                         load_state_dict(strict=True) and run
                                         a forward pass; exit 1 on any mismatch
  check_checkpoint.py --keys OUT.txt     write the small test config (first
                                         line, JSON) and the module's
                                         "name dims..." list, for tests/test_train.c

The safetensors file is parsed here by hand (u64 header length, JSON, raw
little-endian data): the Debian torch has no safetensors package.
"""
import json
import math
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

SMALL = {"embed_dim": 12, "quick_gelu": False,
         "vision_cfg": {"image_size": 16, "patch_size": 4, "width": 24, "layers": 2, "heads": 3, "mlp_ratio": 4.0},
         "text_cfg": {"context_length": 9, "vocab_size": 50, "width": 20, "heads": 4, "layers": 2, "mlp_ratio": 4.0}}


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, mlp_width, act):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, mlp_width)), ("gelu", act()),
                                              ("c_proj", nn.Linear(mlp_width, width))]))

    def forward(self, x, mask=None):  # x: (T, B, W) as open_clip's non-batch-first blocks
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_width, act):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_width, act) for _ in range(layers)])

    def forward(self, x, mask=None):
        for b in self.resblocks:
            x = b(x, mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, c, embed_dim, act):
        super().__init__()
        w, p, g = c["width"], c["patch_size"], c["image_size"] // c["patch_size"]
        self.conv1 = nn.Conv2d(3, w, kernel_size=p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(g * g + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c["layers"], c["heads"], int(w * c.get("mlp_ratio", 4.0)), act)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim))

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, NP, W)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        act = QuickGELU if cfg.get("quick_gelu") else nn.GELU
        t, E = cfg["text_cfg"], cfg["embed_dim"]
        self.visual = VisionTransformer(cfg["vision_cfg"], E, act)
        self.transformer = Transformer(t["width"], t["layers"], t["heads"], int(t["width"] * t.get("mlp_ratio", 4.0)), act)
        self.context_length = t["context_length"]
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.zeros(t["context_length"], t["width"]))
        self.ln_final = nn.LayerNorm(t["width"])
        self.text_projection = nn.Parameter(torch.zeros(t["width"], E))
        mask = torch.full((self.context_length, self.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_text(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.transformer(x.transpose(0, 1), self.attn_mask).transpose(0, 1)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection

    def forward(self, images, ids):
        f_img = nn.functional.normalize(self.visual(images), dim=-1)
        f_txt = nn.functional.normalize(self.encode_text(ids), dim=-1)
        logits = self.logit_scale.exp() * f_img @ f_txt.T
        labels = torch.arange(images.shape[0])
        return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2


DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = OrderedDict()
    for name, e in header.items():
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[b:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def write_keys(out):
    model = CLIP(SMALL)
    with open(out, "w") as f:
        f.write(json.dumps(SMALL) + "\n")
        for k, v in model.state_dict().items():
            f.write(" ".join([k] + [str(d) for d in v.shape]) + "\n")
    print(f"wrote {len(model.state_dict())} keys of the open_clip-structured module to {out}")


def check(path):
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["vlp.config"])
    model = CLIP(cfg)
    sd = model.state_dict()
    ok = True
    if list(sd.keys()) != list(tensors.keys()):
        missing = [k for k in sd if k not in tensors]
        extra = [k for k in tensors if k not in sd]
        print(f"key mismatch: missing {missing[:5]}, unexpected {extra[:5]}, order equal: {not missing and not extra}")
        ok = False
    for k, v in sd.items():
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape):
            print(f"{k}: checkpoint {tuple(tensors[k].shape)}, module {tuple(v.shape)}")
            ok = False
    if not ok:
        return 1
    model.load_state_dict(tensors, strict=True)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, v["image_size"], v["image_size"], generator=g)
    ids = torch.randint(1, t["vocab_size"] - 1, (4, t["context_length"]), generator=g)
    ids[:, -1] = t["vocab_size"] - 1
    with torch.no_grad():
        loss = model(images, ids).item()
    n = sum(p.numel() for p in model.parameters())
    print(f"{path}: {len(sd)} tensors, {n} parameters, open_clip keys/shapes/order match; "
          f"load_state_dict(strict=True) ok; step {meta.get('vlp.step', '?')}; loss on random batch {loss:.4f}")
    return 0 if math.isfinite(loss) else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--keys":
        write_keys(sys.argv[2])
    elif len(sys.argv) == 2 and not sys.argv[1].startswith("-"):
        sys.exit(check(sys.argv[1]))
    else:
        print(__doc__)
        sys.exit(2)
