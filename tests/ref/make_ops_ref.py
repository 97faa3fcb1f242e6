#!/usr/bin/python3
"""Reference vectors for vlp's op library, from PyTorch.

For each op: inputs are drawn in float32 and stored; the op then runs in
float64 on exactly those values (so the reference carries no fp32 rounding of
its own), and the outputs and the gradients for a stored random upstream
gradient `dout` are stored as float32. The attention and the transformer block
use torch's own nn.functional.multi_head_attention_forward, the module
open_clip's ResidualAttentionBlock calls.

usage: /usr/bin/python3 tests/ref/make_ops_ref.py [OUTDIR]   (default tests/ref)
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlpt  # noqa: E402

torch.set_num_threads(1)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
GEN = torch.Generator().manual_seed(20261122)


def randn(*shape, scale=1.0, shift=0.0):
    """A float32 draw, promoted to a float64 leaf that requires grad."""
    x = (torch.randn(*shape, generator=GEN, dtype=torch.float64) * scale + shift).float()
    return x.double().requires_grad_(True)


def f32(t):
    return t.detach().float().numpy()


def save(name, tensors):
    arrays = {}
    for k, v in tensors.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            v = v.int().numpy() if not v.is_floating_point() else v.float().numpy()
        arrays[k] = np.asarray(v)
    path = os.path.join(OUT, name + ".vlpt")
    vlpt.write(path, arrays)
    print(f"wrote {path}: " + ", ".join(f"{k}{tuple(a.shape)}" for k, a in arrays.items()))


def run(name, inputs, fn, extra=None):
    """inputs: dict of leaf tensors (float ones get gradients). fn(**inputs) ->
    dict of outputs; the first output is the one the upstream gradient hits."""
    outs = fn(**inputs)
    first_name, first = next(iter(outs.items()))
    dout = randn(*first.shape).detach()
    first.backward(dout)
    rec = dict(inputs)
    rec.update(outs)
    rec["dout"] = dout
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.grad is not None:
            rec["d" + k] = v.grad
    if extra:
        rec.update(extra)
    save(name, rec)


def quickgelu(x):
    return x * torch.sigmoid(1.702 * x)


def mha(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, heads, causal):
    """x (B, T, C) through torch's MHA as open_clip calls it (seq-first)."""
    B, T, C = x.shape
    mask = None
    if causal:
        mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu_(1)
    out, att = F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), C, heads,
        in_proj_weight, in_proj_bias, None, None, False, 0.0, out_proj_weight, out_proj_bias,
        training=False, need_weights=True, attn_mask=mask, average_attn_weights=False)
    return out.transpose(0, 1), att


def layernorm_stats(x, eps):
    mean = x.mean(-1)
    var = x.var(-1, unbiased=False)
    return mean, 1.0 / torch.sqrt(var + eps)


def main():
    # linear
    N, C, OC = 13, 19, 11
    run("linear", dict(inp=randn(N, C), weight=randn(OC, C, scale=C ** -0.5),
                       bias=randn(OC)),
        lambda inp, weight, bias: dict(out=F.linear(inp, weight, bias)))

    # layernorm, on rows whose mean is far from 0 (the one-pass variance trap)
    N, C, eps = 9, 37, 1e-5
    def ln(inp, weight, bias):
        mean, rstd = layernorm_stats(inp, eps)
        return dict(out=F.layer_norm(inp, (C,), weight, bias, eps), mean=mean, rstd=rstd)
    run("layernorm", dict(inp=randn(N, C, scale=2.0, shift=3.0), weight=randn(C, shift=1.0),
                          bias=randn(C)), ln, extra=dict(eps=np.array([eps], np.float32)))

    # activations
    run("gelu", dict(inp=randn(257, scale=3.0)), lambda inp: dict(out=F.gelu(inp)))
    run("quickgelu", dict(inp=randn(257, scale=3.0)), lambda inp: dict(out=quickgelu(inp)))

    # softmax
    run("softmax", dict(inp=randn(7, 29, scale=3.0)),
        lambda inp: dict(out=torch.softmax(inp, -1)))

    # residual
    run("residual", dict(a=randn(100), b=randn(100)), lambda a, b: dict(out=a + b))

    # multi-head attention, odd head size, both masks
    for name, (B, T, C, NH, causal) in {"mha": (3, 11, 20, 4, False),
                                        "mha_causal": (2, 9, 24, 3, True)}.items():
        def fn(inp, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias):
            out, att = mha(inp, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                           NH, causal)
            return dict(out=out, att=att)
        run(name, dict(inp=randn(B, T, C), in_proj_weight=randn(3 * C, C, scale=C ** -0.5),
                       in_proj_bias=randn(3 * C, scale=0.1),
                       out_proj_weight=randn(C, C, scale=C ** -0.5),
                       out_proj_bias=randn(C, scale=0.1)), fn,
            extra=dict(dims=np.array([B, T, C, NH, int(causal)], np.int32)))

    # token + positional embedding, with repeated ids
    B, T, C, V = 3, 7, 10, 23
    ids = torch.randint(0, V, (B, T), generator=GEN)
    ids[1, 2] = ids[0, 0]
    run("embedding", dict(wte=randn(V, C), wpe=randn(T, C)),
        lambda wte, wpe: dict(out=F.embedding(ids, wte) + wpe),
        extra=dict(ids=ids.int()))

    # patch embedding: a 12x8 image in 4x4 patches (a 3x2 grid), width 10
    B, Cin, H, Wd, P, W = 2, 3, 12, 8, 4, 10
    def patch(img, weight):
        y = F.conv2d(img, weight, stride=P)           # (B, W, H/P, Wd/P)
        return dict(out=y.flatten(2).transpose(1, 2))  # (B, NP, W)
    run("patch_embed", dict(img=randn(B, Cin, H, Wd), weight=randn(W, Cin, P, P, scale=0.2)),
        patch, extra=dict(dims=np.array([B, Cin, H, Wd, P, W], np.int32)))

    # class token + positional embedding
    B, NP, W = 2, 6, 10
    def cls_pos(inp, cls, pos):
        x = torch.cat([cls.expand(B, 1, W), inp], dim=1)
        return dict(out=x + pos)
    run("cls_pos", dict(inp=randn(B, NP, W), cls=randn(W), pos=randn(NP + 1, W)), cls_pos)

    # pooling: token 0, and the token at argmax(ids) (first maximum on ties)
    B, T, C = 4, 7, 5
    ids = torch.randint(0, 50, (B, T), generator=GEN)
    ids[2, 1] = ids[2, 5] = 99  # a tie: the first one wins
    run("pool_first", dict(inp=randn(B, T, C)), lambda inp: dict(out=inp[:, 0]))
    idx = ids.argmax(-1)
    run("pool_argmax", dict(inp=randn(B, T, C)),
        lambda inp: dict(out=inp[torch.arange(B), idx]),
        extra=dict(ids=ids.int(), index=idx.int()))

    # L2 normalisation, rows of very different norms
    x = randn(6, 17)
    with torch.no_grad():
        x.mul_(torch.tensor([1e-3, 0.5, 1.0, 3.0, 40.0, 1e3], dtype=x.dtype)[:, None])
        x.copy_(x.float().double())
    run("l2norm", dict(inp=x.detach().requires_grad_(True)),
        lambda inp: dict(out=F.normalize(inp, dim=-1), norm=inp.norm(dim=-1)))

    # CLIP loss (open_clip ClipLoss, one process); features are normalised
    # before they are stored so the C side gets exactly unit rows in f32
    for name, (B, D, ls) in {"clip_loss": (8, 16, math.log(1 / 0.07)),
                             "clip_loss_b13": (13, 7, math.log(100.0))}.items():
        img = F.normalize(randn(B, D).detach(), dim=-1).float().double().requires_grad_(True)
        txt = F.normalize(randn(B, D).detach(), dim=-1).float().double().requires_grad_(True)
        logit_scale = torch.tensor([ls], dtype=torch.float32).double().requires_grad_(True)
        dloss = torch.tensor(0.75, dtype=torch.float64)
        logits = logit_scale.exp() * img @ txt.T
        labels = torch.arange(B)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        loss.backward(dloss)
        save(name, dict(img=img, txt=txt, logit_scale=logit_scale, loss=loss.reshape(1),
                        dloss=dloss.reshape(1), dimg=img.grad, dtxt=txt.grad,
                        dlogit_scale=logit_scale.grad))

    # one whole pre-LN transformer block, open_clip ResidualAttentionBlock
    for name, (B, T, C, NH, hidden, causal, act) in {
            "block": (2, 7, 24, 4, 96, False, "gelu"),
            "block_causal_quickgelu": (2, 9, 20, 2, 80, True, "quickgelu")}.items():
        params = {
            "ln_1.weight": randn(C, scale=0.1, shift=1.0), "ln_1.bias": randn(C, scale=0.1),
            "attn.in_proj_weight": randn(3 * C, C, scale=C ** -0.5),
            "attn.in_proj_bias": randn(3 * C, scale=0.1),
            "attn.out_proj.weight": randn(C, C, scale=C ** -0.5),
            "attn.out_proj.bias": randn(C, scale=0.1),
            "ln_2.weight": randn(C, scale=0.1, shift=1.0), "ln_2.bias": randn(C, scale=0.1),
            "mlp.c_fc.weight": randn(hidden, C, scale=C ** -0.5),
            "mlp.c_fc.bias": randn(hidden, scale=0.1),
            "mlp.c_proj.weight": randn(C, hidden, scale=hidden ** -0.5),
            "mlp.c_proj.bias": randn(C, scale=0.1),
        }
        x = randn(B, T, C)
        p = params
        h = F.layer_norm(x, (C,), p["ln_1.weight"], p["ln_1.bias"], 1e-5)
        a, _ = mha(h, p["attn.in_proj_weight"], p["attn.in_proj_bias"],
                   p["attn.out_proj.weight"], p["attn.out_proj.bias"], NH, causal)
        x1 = x + a
        h = F.layer_norm(x1, (C,), p["ln_2.weight"], p["ln_2.bias"], 1e-5)
        h = F.linear(h, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"])
        h = quickgelu(h) if act == "quickgelu" else F.gelu(h)
        out = x1 + F.linear(h, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])
        dout = randn(B, T, C).detach()
        out.backward(dout)
        rec = dict(inp=x, out=out, dout=dout, dinp=x.grad,
                   dims=np.array([B, T, C, NH, hidden, int(causal), int(act == "quickgelu")],
                                 np.int32))
        for k, v in params.items():
            rec[k] = v
            rec["grad." + k] = v.grad
        save(name, rec)


if __name__ == "__main__":
    main()
