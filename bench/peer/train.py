#!/usr/bin/python3
"""PyTorch peer of bench/train: the open_clip-structured CLIP of
tests/ref/check_checkpoint.py, ClipLoss (its forward), AdamW(lr 1e-4, betas
0.9/0.98, eps 1e-6, wd 0.2 on open_clip's groups, as vlp), random data, fp32 or bf16 autocast (the
forward under torch.autocast("cpu", bfloat16): matmuls in bf16, weights fp32); median step time after two
warm-up steps, with forward/backward/optimizer medians. One line for bench/train."""
import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/ref"))
from check_checkpoint import CLIP  # noqa: E402

CONFIGS = {
    "tiny": {"embed_dim": 256, "quick_gelu": False,
             "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 256, "layers": 6, "heads": 4, "mlp_ratio": 4.0},
             "text_cfg": {"context_length": 32, "vocab_size": 2514, "width": 256, "heads": 4, "layers": 4, "mlp_ratio": 4.0}},
    "vitb32": {"embed_dim": 512, "quick_gelu": True,
               "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12, "mlp_ratio": 4.0},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12, "mlp_ratio": 4.0}},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--grad-checkpointing", action="store_true",
                    help="each residual block recomputed in the backward (open_clip's set_grad_checkpointing)")
    a = ap.parse_args()
    if a.grad_checkpointing:
        from torch.utils.checkpoint import checkpoint
        import check_checkpoint

        # open_clip up to 2.31 checkpointed reentrant (the default here); 2.32 on passes use_reentrant=False
        # (PEER_REENTRANT=0), which on this torch 1.13 holds far more memory
        REENTRANT = os.environ.get("PEER_REENTRANT", "1") == "1"

        def forward(self, x, mask=None):  # open_clip's Transformer.forward with grad_checkpointing
            for b in self.resblocks:
                x = checkpoint(b, x, mask, use_reentrant=REENTRANT)
            return x
        check_checkpoint.Transformer.forward = forward
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[a.config]
    model = CLIP(cfg)
    # open_clip's main.py: no decay for ndim < 2 or bn/ln/bias/logit_scale names
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
              {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2}]
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    S, T, V = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"]
    img = torch.randn(a.batch, 3, S, S)
    ids = torch.randint(1, V - 3, (a.batch, T))
    ids[:, 0] = V - 2
    ids[:, 12] = V - 1
    ids[:, 13:] = 0
    times = {"step": [], "fwd": [], "bwd": [], "opt": []}
    for k in range(a.steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = model(img, ids)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        t3 = time.perf_counter()
        if k >= 2:
            times["step"].append(t3 - t0), times["fwd"].append(t1 - t0), times["bwd"].append(t2 - t1), times["opt"].append(t3 - t2)
    med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peer samples/s {a.batch / med['step'] * 1e3:.2f} ms {med['step']:.1f} fwd {med['fwd']:.1f} "
          f"bwd {med['bwd']:.1f} opt {med['opt']:.1f} rss_mib {rss:.0f}")


if __name__ == "__main__":
    main()
