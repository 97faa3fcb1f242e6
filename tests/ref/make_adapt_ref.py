#!/usr/bin/python3
"""Reference for prompt learning on a frozen CLIP (the small CLIP of
make_clip_ref.py with three layers a tower), written in PyTorch after the
methods' reference code (KaiyangZhou/CoOp: trainers/coop.py, cocoop.py;
muzairkhattak/multimodal-prompt-learning: trainers/maple.py and its
VisionTransformer_MaPLe / ResidualAttentionBlock_MaPLe), run in float64:

  CoOp:   the class prompt's token embeddings with tokens 1..n replaced by the
          context (shared, or one set per class: CSC), plus the positions,
          through the text tower; logits = exp(logit_scale) · cos(image, class);
          mean cross-entropy;
  CoCoOp: the context plus, for each image, meta_net(image feature) =
          linear2(relu(linear1(x))) added to every context vector; the
          classes' features per image;
  MaPLe:  n text context tokens; the image tower gets proj(ctx) appended
          after its tokens (after the positions, before ln_pre); layers
          1..J-1 of the text tower get compound_prompts_text[l-1] at tokens
          1..n, those of the image tower compound_prompt_projections[l-1] of
          them as their last n tokens.

Stores adapt_step.vlpt: the model, the images and labels, and for each case
(coop, csc, cocoop, maple) the class prompts' ids, the prompt parameters, the
scores (cosines, (B, C)), the loss and every prompt parameter's gradient.

usage: /usr/bin/python3 tests/ref/make_adapt_ref.py [OUTDIR]
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
CFG.update(embed_dim=32, v_layers=3, t_layers=3, batch=5)
CLASSES = 4
DEPTH = 3  # MaPLe's J


def class_ids(c, n):
    """(C, T): start, n placeholders, the name's 1-3 tokens, end, padding"""
    T, V = c["context_length"], c["vocab_size"]
    ids = torch.zeros(CLASSES, T, dtype=torch.int64)
    for k in range(CLASSES):
        words = 1 + k % 3
        ids[k, 0] = V - 2
        ids[k, 1:1 + n] = 7  # any id: replaced by the context
        ids[k, 1 + n:1 + n + words] = torch.randint(1, V - 2, (words,), generator=R.GEN)
        ids[k, 1 + n + words] = V - 1
    return ids


def text_features(ctx, ids, p, c, deep=()):
    """ctx (C, n, W) in place of tokens 1..n; deep[l-1] (n, W) at layer l's input"""
    n = ctx.shape[1]
    x = F.embedding(ids, p["token_embedding.weight"])
    x = torch.cat([x[:, :1], ctx, x[:, 1 + n:]], dim=1) + p["positional_embedding"]
    for i in range(c["t_layers"]):
        if 1 <= i <= len(deep):
            x = torch.cat([x[:, :1], deep[i - 1].expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1)
        x = R.resblock(x, p, f"transformer.resblocks.{i}.", c["t_heads"], True, c["quick_gelu"])
    return F.normalize(R.pool_text(x, ids, p, c), dim=-1)


def image_features(img, p, c, vin=None, vdeep=()):
    """the image tower with vin (n, Wv) appended and vdeep[l-1] as the last n tokens of layer l"""
    x = F.conv2d(img, p["visual.conv1.weight"], stride=c["patch_size"]).flatten(2).transpose(1, 2)
    cls = p["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + p["visual.positional_embedding"]
    if vin is not None:
        x = torch.cat([x, vin.expand(x.shape[0], -1, -1)], dim=1)
    x = F.layer_norm(x, (c["v_width"],), p["visual.ln_pre.weight"], p["visual.ln_pre.bias"], 1e-5)
    for i in range(c["v_layers"]):
        if 1 <= i <= len(vdeep):
            n = vdeep[i - 1].shape[0]
            x = torch.cat([x[:, :-n], vdeep[i - 1].expand(x.shape[0], -1, -1)], dim=1)
        x = R.resblock(x, p, f"visual.transformer.resblocks.{i}.", c["v_heads"], False, c["quick_gelu"])
    x = F.layer_norm(x[:, 0], (c["v_width"],), p["visual.ln_post.weight"], p["visual.ln_post.bias"], 1e-5)
    return F.normalize(x @ p["visual.proj"], dim=-1)


def finish(rec, name, ids, params, scores, labels, p):
    loss = F.cross_entropy(p["logit_scale"].exp().detach() * scores, labels)
    loss.backward()
    rec[name + ".ids"] = ids.int().numpy()
    rec[name + ".scores"] = scores.detach().float().numpy()
    rec[name + ".loss"] = np.array([loss.item()], np.float32)
    for k, v in params.items():
        rec[name + ".w." + k] = v.detach().float().numpy()
        rec[name + ".g." + k] = v.grad.float().numpy()
    for v in p.values():
        v.grad = None
    print(f"{name}: loss {loss.item():.6f}, {len(params)} prompt parameters")


def linear(out, inp):
    return R.draw(out, inp, scale=inp ** -0.5), R.draw(out, scale=0.1)


def main():
    c = CFG
    p = R.make_params(c)
    images, _ = R.make_batch(c)
    B, W, Wv, E = c["batch"], c["t_width"], c["v_width"], c["embed_dim"]
    labels = torch.tensor([b % CLASSES for b in range(B)])
    rec = {"config": np.array([c[k] for k in R.CFG] + [CLASSES, DEPTH], np.int32),
           "images": images.float().numpy(), "labels": labels.int().numpy()}
    rec.update({k: v.detach().float().numpy() for k, v in p.items()})
    img = image_features(images, p, c).detach()
    P = "prompt_learner."

    n = 3  # CoOp, shared context
    ids = class_ids(c, n)
    ctx = R.draw(n, W, scale=0.3)
    scores = img @ text_features(ctx.expand(CLASSES, -1, -1), ids, p, c).T
    finish(rec, "coop", ids, {P + "ctx": ctx}, scores, labels, p)

    ctx = R.draw(CLASSES, n, W, scale=0.3)  # CSC
    scores = img @ text_features(ctx, ids, p, c).T
    finish(rec, "csc", ids, {P + "ctx": ctx}, scores, labels, p)

    H = max(1, E // 16)  # CoCoOp
    ctx = R.draw(n, W, scale=0.3)
    w1, b1 = linear(H, E)
    w2, b2 = linear(W, H)
    rows = []
    for b in range(B):
        shift = F.linear(F.relu(F.linear(img[b], w1, b1)), w2, b2)
        rows.append(img[b] @ text_features((ctx + shift).expand(CLASSES, -1, -1), ids, p, c).T)
    finish(rec, "cocoop", ids, {P + "ctx": ctx, P + "meta_net.linear1.weight": w1, P + "meta_net.linear1.bias": b1,
                                P + "meta_net.linear2.weight": w2, P + "meta_net.linear2.bias": b2},
           torch.stack(rows), labels, p)

    n = 2  # MaPLe
    ids = class_ids(c, n)
    ctx = R.draw(n, W, scale=0.3)
    pw, pb = linear(Wv, W)
    deep = [R.draw(n, W, scale=0.3) for _ in range(DEPTH - 1)]
    couple = [linear(Wv, W) for _ in range(DEPTH - 1)]
    vdeep = [F.linear(d, cw, cb) for d, (cw, cb) in zip(deep, couple)]
    txt = text_features(ctx.expand(CLASSES, -1, -1), ids, p, c, deep)
    im = image_features(images, p, c, F.linear(ctx, pw, pb), vdeep)
    params = {P + "ctx": ctx, P + "proj.weight": pw, P + "proj.bias": pb}
    for i, d in enumerate(deep):
        params[P + f"compound_prompts_text.{i}"] = d
    for i, (cw, cb) in enumerate(couple):
        params[P + f"compound_prompt_projections.{i}.weight"] = cw
        params[P + f"compound_prompt_projections.{i}.bias"] = cb
    finish(rec, "maple", ids, params, im @ txt.T, labels, p)

    path = os.path.join(OUT, "adapt_step.vlpt")
    vlpt.write(path, rec)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
