#!/usr/bin/python3
"""Reference vectors for vlp's training objectives beyond CLIP's InfoNCE, from
PyTorch in float64 on float32-stored inputs (as make_ops_ref.py).

SigLIP: open_clip's SigLipLoss, one process:
    logits = exp(logit_scale) * img @ txt.T + logit_bias
    labels = 2 * eye(B) - 1
    loss   = -logsigmoid(labels * logits).sum() / B

usage: /usr/bin/python3 tests/ref/make_objectives_ref.py [OUTDIR]   (default tests/ref)
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
GEN = torch.Generator().manual_seed(20261123)


def unit_rows(B, D):
    x = F.normalize(torch.randn(B, D, generator=GEN, dtype=torch.float64), dim=-1)
    return x.float().double().requires_grad_(True)


def scalar(v):
    return torch.tensor([v], dtype=torch.float32).double().requires_grad_(True)


def save(name, tensors):
    arrays = {k: np.asarray(v.detach().float().numpy() if isinstance(v, torch.Tensor) else v)
              for k, v in tensors.items()}
    path = os.path.join(OUT, name + ".vlpt")
    vlpt.write(path, arrays)
    print(f"wrote {path}: " + ", ".join(f"{k}{tuple(a.shape)}" for k, a in arrays.items()))


def main():
    # init values (ln 10, -10) and trained-looking ones; pairs partly aligned
    for name, (B, D, ls, lb) in {"siglip_loss": (8, 16, math.log(10.0), -10.0),
                                 "siglip_loss_b13": (13, 7, math.log(30.0), -3.5)}.items():
        img = unit_rows(B, D)
        noise = unit_rows(B, D)
        txt = F.normalize(img.detach() + 0.7 * noise.detach(), dim=-1).float().double().requires_grad_(True)
        logit_scale, logit_bias = scalar(ls), scalar(lb)
        dloss = torch.tensor(0.75, dtype=torch.float64)
        logits = logit_scale.exp() * img @ txt.T + logit_bias
        labels = 2 * torch.eye(B, dtype=torch.float64) - 1
        loss = -F.logsigmoid(labels * logits).sum() / B
        loss.backward(dloss)
        save(name, dict(img=img, txt=txt, logit_scale=logit_scale, logit_bias=logit_bias,
                        loss=loss.reshape(1), dloss=dloss.reshape(1), dimg=img.grad, dtxt=txt.grad,
                        dlogit_scale=logit_scale.grad, dlogit_bias=logit_bias.grad))



def filip_ref():
    """FILIP (Yao et al. 2021) token-wise late interaction on normalised token
    features; text tokens past each caption's length are padding:
        sI[i,j] = mean_k  max_{r<len_j} <img[i,k], txt[j,r]>     (image → text)
        sT[i,j] = mean_{r<len_j} max_k <img[i,k], txt[j,r]>      (text → image)
        loss = ½ (CE(s·sI, diag) + CE(s·sTᵀ, diag)),  s = exp(logit_scale)"""
    for name, (B, Ti, Tt, D, ls, lens) in {
            "filip_loss": (5, 4, 6, 8, math.log(1 / 0.07), [6, 3, 1, 5, 2]),
            "filip_loss_b7": (7, 9, 5, 6, math.log(20.0), [5, 5, 2, 4, 1, 3, 5])}.items():
        img = F.normalize(torch.randn(B, Ti, D, generator=GEN, dtype=torch.float64), dim=-1)
        txt = F.normalize(torch.randn(B, Tt, D, generator=GEN, dtype=torch.float64), dim=-1)
        txt = F.normalize(txt + 0.8 * img[:, :1, :], dim=-1)  # captions somewhat about their image
        img = img.float().double().requires_grad_(True)
        txt = txt.float().double().requires_grad_(True)
        logit_scale = scalar(ls)
        mask = torch.zeros(B, Tt, dtype=torch.bool)
        for j, n in enumerate(lens):
            mask[j, :n] = True
        sim = torch.einsum("ikd,jrd->ijkr", img, txt)  # (B, B, Ti, Tt)
        neg = torch.finfo(torch.float64).min
        s_i = sim.masked_fill(~mask[None, :, None, :], neg).max(dim=3).values.mean(dim=2)
        maxk = sim.max(dim=2).values  # (B, B, Tt)
        s_t = (maxk * mask[None, :, :]).sum(dim=2) / mask.sum(dim=1)[None, :]
        s = logit_scale.exp()
        labels = torch.arange(B)
        loss = 0.5 * (F.cross_entropy(s * s_i, labels) + F.cross_entropy(s * s_t.T, labels))
        dloss = torch.tensor(0.75, dtype=torch.float64)
        loss.backward(dloss)
        save(name, dict(img=img, txt=txt, lens=np.array(lens, dtype=np.int32),
                        logit_scale=logit_scale, loss=loss.reshape(1), dloss=dloss.reshape(1),
                        dimg=img.grad, dtxt=txt.grad, dlogit_scale=logit_scale.grad))



if __name__ == "__main__":
    main()
    filip_ref()
