#!/usr/bin/python3
"""PyTorch peer of bench/embed: ViT-B-32 (open_clip structure, the module of
tests/ref/check_checkpoint.py, QuickGELU), fp32 or bf16 autocast, torch.no_grad, batch B,
median over reps after a warm-up; prints one line for bench/embed to read."""
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
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CLIP(CFG).eval()
    img = torch.randn(a.batch, 3, 224, 224)
    ids = torch.randint(1, 49000, (a.batch, 77))
    ids[:, 0], ids[:, 12], ids[:, 13:] = 49406, 49407, 0
    ti, tt = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        for k in range(a.reps + 1):
            t0 = time.perf_counter()
            torch.nn.functional.normalize(model.visual(img), dim=-1)
            t1 = time.perf_counter()
            torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
            t2 = time.perf_counter()
            if k:
                ti.append(t1 - t0), tt.append(t2 - t1)
    ti.sort(), tt.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peer images/s {a.batch / ti[len(ti) // 2]:.2f} texts/s {a.batch / tt[len(tt) // 2]:.2f} rss_mib {rss:.0f}")


if __name__ == "__main__":
    main()
