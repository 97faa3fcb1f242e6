#!/usr/bin/python3
"""PyTorch peer of bench/ops: the same ops, shapes and thread count, timed the
same way (median of --reps after 2 warm-ups), forward with autograd recording
as in training, backward into accumulating .grad tensors as vlp's ops do.
Prints one line per op:  PEER <name> | <fwd ms> <bwd ms>"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def median_ms(fn, reps):
    fn(), fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def leaf(*shape):
    return (torch.randn(*shape) * 0.1).requires_grad_(True)


AUTOCAST = False  # --precision bf16: every forward under torch.autocast("cpu", bfloat16)


def fwd_bwd(make, reps):
    """make() runs the forward and returns the output; time it, then time the
    backward of a kept forward output (retain_graph so it can be replayed)."""
    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST):
            return make()
    fwd = median_ms(forward, reps)
    out = forward()
    dout = torch.randn_like(out)
    bwd = median_ms(lambda: out.backward(dout, retain_graph=True), reps)
    return fwd, bwd


def linear(N, C, OC, reps):
    x, w, b = leaf(N, C), leaf(OC, C), leaf(OC)
    return fwd_bwd(lambda: F.linear(x, w, b), reps)


def attention_core(B, T, C, NH, causal, reps):
    qkv = leaf(B, T, 3 * C)
    hs = C // NH
    mask = torch.full((T, T), float("-inf")).triu_(1) if causal else None

    def core():
        q, k, v = qkv.view(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)  # (B, NH, T, hs) each
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hs))
        if mask is not None:
            s = s + mask
        a = torch.softmax(s, dim=-1)
        return torch.matmul(a, v).transpose(1, 2).reshape(B, T, C)
    return fwd_bwd(core, reps)


def mha(B, T, C, NH, causal, reps):
    x = leaf(T, B, C)  # seq-first, as nn.MultiheadAttention without batch_first
    w_in, b_in, w_out, b_out = leaf(3 * C, C), leaf(3 * C), leaf(C, C), leaf(C)
    mask = torch.full((T, T), float("-inf")).triu_(1) if causal else None

    def run():
        return F.multi_head_attention_forward(
            x, x, x, C, NH, w_in, b_in, None, None, False, 0.0, w_out, b_out,
            training=True, need_weights=False, attn_mask=mask)[0]
    return fwd_bwd(run, reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    global AUTOCAST
    AUTOCAST = a.precision == "bf16"
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"peer: PyTorch {torch.__version__}, {torch.get_num_threads()} threads, {a.precision}", flush=True)
    Nv = a.batch * 65
    rows = [
        ("linear qkv", lambda: linear(Nv, 256, 768, a.reps)),
        ("linear c_fc", lambda: linear(Nv, 256, 1024, a.reps)),
        ("linear c_proj", lambda: linear(Nv, 1024, 256, a.reps)),
        ("attention core image", lambda: attention_core(a.batch, 65, 256, 4, False, a.reps)),
        ("mha image", lambda: mha(a.batch, 65, 256, 4, False, a.reps)),
        ("attention core text causal", lambda: attention_core(a.batch, 32, 256, 4, True, a.reps)),
        ("mha text causal", lambda: mha(a.batch, 32, 256, 4, True, a.reps)),
    ]
    for name, fn in rows:
        f, b = fn()
        print(f"PEER {name} | {f:.3f} {b:.3f}", flush=True)


if __name__ == "__main__":
    main()
