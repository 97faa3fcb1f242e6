#!/usr/bin/python3
"""PyTorch peer of bench/embed: ViT-B-32 (open_clip structure, the module of
tests/ref/check_checkpoint.py, QuickGELU), fp32, bf16 autocast, or int8: PyTorch's dynamic
quantization (torch.ao.quantization.quantize_dynamic of the nn.Linear layers, int8 weights,
activations quantized on the fly); torch.no_grad, batch B, median over reps after a warm-up;
prints one line for bench/embed to read (int8: with the cosine of its embeddings to fp32's)."""
import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/ref"))
from check_checkpoint import CLIP  # noqa: E402

CFG = {"embed_dim": 512, "quick_gelu": True,
       "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12, "mlp_ratio": 4.0},
       "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12, "mlp_ratio": 4.0}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CLIP(CFG).eval()
    img = torch.randn(a.batch, 3, 224, 224)
    ids = torch.randint(1, 49000, (a.batch, 77))
    ids[:, 0], ids[:, 12], ids[:, 13:] = 49406, 49407, 0
    extra = ""
    if a.precision == "int8":
        with torch.no_grad():
            for p in model.parameters():  # the module starts some at zero (the projections): embeddings 0
                if not p.abs().sum():
                    p.normal_(0.0, 0.02)
            ref = (torch.nn.functional.normalize(model.visual(img), dim=-1),
                   torch.nn.functional.normalize(model.encode_text(ids), dim=-1))
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        n = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
        print(f"PyTorch dynamic int8 ({torch.backends.quantized.engine}): {n} nn.Linear layers quantized "
              "(MLP c_fc, c_proj; attention's in_proj is not an nn.Linear and out_proj is excluded)")
    ti, tt = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        for k in range(a.reps + 1):
            t0 = time.perf_counter()
            ei = torch.nn.functional.normalize(model.visual(img), dim=-1)
            t1 = time.perf_counter()
            et = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
            t2 = time.perf_counter()
            if k:
                ti.append(t1 - t0), tt.append(t2 - t1)
    if a.precision == "int8":
        cos = torch.cat([(ei * ref[0]).sum(-1), (et * ref[1]).sum(-1)])
        extra = f" cos_min {cos.min().item():.5f} cos_mean {cos.mean().item():.5f}"
    ti.sort(), tt.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peer images/s {a.batch / ti[len(ti) // 2]:.2f} texts/s {a.batch / tt[len(tt) // 2]:.2f} rss_mib {rss:.0f}"
          + extra)


if __name__ == "__main__":
    main()
