#!/usr/bin/python3
"""Reference for masked image modeling (He et al. 2021, MAE) on the small CLIP
of make_clip_ref.py, written in PyTorch, run in float64:

  encoder: conv1 patches + positions, only the visible patches kept (MAE's
           random_masking with a fixed keep list), the class token prepended,
           ln_pre, the resblocks, ln_post and visual.proj on every token;
  decoder: mae_decoder.embed, mask tokens at the masked patches, positions,
           resblocks, ln, pred to the patch's pixels (channel, row, column);
  loss:    MAE's norm_pix_loss: per-patch standardised pixels (unbiased
           variance, eps 1e-6), mean squared error per patch, averaged over the
           masked patches.

Stores mae_step.vlpt: the batch, the keep lists, the MAE loss and every
parameter's gradient ("grad.*"); and the joint objective (FLIP-style masked
contrastive + MAE): CLIP_W * ClipLoss(class token of the masked image, text)
+ MAE_W * MAE loss, with its gradients ("joint_grad.*").

usage: /usr/bin/python3 tests/ref/make_mae_ref.py [OUTDIR]
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlpt  # noqa: E402
import make_clip_ref as R  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

CFG = dict(R.CFG)
CFG.update(v_layers=1, t_layers=1, batch=4)
DEC = dict(width=16, layers=2, heads=2, mlp=40)
NK = 4  # of 16 patches: a mask ratio of 0.75
CLIP_W, MAE_W = 1.0, 0.5


def decoder_params(c):
    g = c["image_size"] // c["patch_size"]
    C, E, K = DEC["width"], c["embed_dim"], 3 * c["patch_size"] ** 2
    p = {"mae_decoder.embed.weight": R.draw(C, E, scale=E ** -0.5),
         "mae_decoder.embed.bias": R.draw(C, scale=0.1),
         "mae_decoder.mask_token": R.draw(C, scale=0.5),
         "mae_decoder.positional_embedding": R.draw(g * g + 1, C, scale=0.5)}
    for i in range(DEC["layers"]):
        p.update(R.block_params(f"mae_decoder.resblocks.{i}.", C, DEC["mlp"]))
    p["mae_decoder.ln.weight"] = R.draw(C, scale=0.1, shift=1.0)
    p["mae_decoder.ln.bias"] = R.draw(C, scale=0.1)
    p["mae_decoder.pred.weight"] = R.draw(K, C, scale=C ** -0.5)
    p["mae_decoder.pred.bias"] = R.draw(K, scale=0.1)
    return p


def masked_tokens(img, keep, p, c):
    """the visible patches' and the class token's features, projected (B, 1+NK, E)"""
    x = F.conv2d(img, p["visual.conv1.weight"], stride=c["patch_size"]).flatten(2).transpose(1, 2)
    pos = p["visual.positional_embedding"]
    x = x + pos[1:]
    x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    cls = (p["visual.class_embedding"] + pos[0]).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    W = c["v_width"]
    x = F.layer_norm(x, (W,), p["visual.ln_pre.weight"], p["visual.ln_pre.bias"], 1e-5)
    for i in range(c["v_layers"]):
        x = R.resblock(x, p, f"visual.transformer.resblocks.{i}.", c["v_heads"], False, c["quick_gelu"])
    x = F.layer_norm(x, (W,), p["visual.ln_post.weight"], p["visual.ln_post.bias"], 1e-5)
    return x @ p["visual.proj"]


def decode(tok, keep, p, c):
    B, NP = tok.shape[0], (c["image_size"] // c["patch_size"]) ** 2
    e = F.linear(tok, p["mae_decoder.embed.weight"], p["mae_decoder.embed.bias"])
    C = e.shape[-1]
    full = p["mae_decoder.mask_token"].expand(B, NP, C)
    full = full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, C), e[:, 1:])
    x = torch.cat([e[:, :1], full], dim=1) + p["mae_decoder.positional_embedding"]
    for i in range(DEC["layers"]):
        x = R.resblock(x, p, f"mae_decoder.resblocks.{i}.", DEC["heads"], False, c["quick_gelu"])
    x = F.layer_norm(x, (C,), p["mae_decoder.ln.weight"], p["mae_decoder.ln.bias"], 1e-5)
    return F.linear(x, p["mae_decoder.pred.weight"], p["mae_decoder.pred.bias"])[:, 1:]


def mae_loss(img, pred, keep, c):
    P = c["patch_size"]
    target = F.unfold(img, P, stride=P).transpose(1, 2)  # (B, NP, 3·P·P), (channel, row, col)
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)  # unbiased, as MAE
    target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    mask = torch.ones(loss.shape, dtype=loss.dtype)
    mask.scatter_(1, keep, 0.0)
    return (loss * mask).sum() / mask.sum()


def main():
    c = CFG
    p = R.make_params(c)
    p.update(decoder_params(c))
    images, ids = R.make_batch(c)
    NP = (c["image_size"] // c["patch_size"]) ** 2
    keep = torch.stack([torch.randperm(NP, generator=R.GEN)[:NK].sort().values
                        for _ in range(c["batch"])])
    rec = {"config": np.array([c[k] for k in R.CFG] + [DEC["width"], DEC["layers"], DEC["heads"],
                                                      DEC["mlp"], NK], np.int32),
           "images": images.float().numpy(), "ids": ids.int().numpy(),
           "keep": keep.int().numpy(), "weights": np.array([CLIP_W, MAE_W], np.float32)}

    tok = masked_tokens(images, keep, p, c)
    loss = mae_loss(images, decode(tok, keep, p, c), keep, c)
    loss.backward()
    rec["loss"] = np.array([loss.item()], np.float32)
    rec.update({k: v.detach().float().numpy() for k, v in p.items()})
    R.record_grads(rec, p, "grad.")

    tok = masked_tokens(images, keep, p, c)
    m = mae_loss(images, decode(tok, keep, p, c), keep, c)
    cl = R.clip_loss(tok[:, 0], R.encode_text(ids, p, c), p["logit_scale"])
    joint = CLIP_W * cl + MAE_W * m
    joint.backward()
    rec["joint_loss"] = np.array([joint.item()], np.float32)
    R.record_grads(rec, p, "joint_grad.")
    path = os.path.join(OUT, "mae_step.vlpt")
    vlpt.write(path, rec)
    print(f"wrote {path}: MAE loss {loss.item():.6f}, joint {joint.item():.6f} "
          f"(clip {cl.item():.6f}), {len(p)} parameters")


if __name__ == "__main__":
    main()
