#!/usr/bin/python3
"""Reference for CoCa-style captioning: the small CLIP of make_clip_ref.py
plus open_clip's MultimodalTransformer (text_decoder.*: causal resblocks, then
cross-attention blocks whose keys are the image tower's projected tokens,
ln_final, text_projection to the vocabulary), written in PyTorch, run in
float64. Stores:
  - coca_step: loss = 1.0 * ClipLoss + 2.0 * caption loss, where the caption
    loss is the next-token cross-entropy (targets: the tokens after the start
    token up to the end token) weighted by PRIOR's token weights
    (1 - p_ref)^alpha normalised to mean 1 per caption, from given reference
    log-probabilities; and the gradient of every parameter;
  - the same caption loss unweighted (plain NTP, "ntp_loss");
  - textlm: the decoder without cross-attention on the text tower alone
    (PRIOR's text-only reference LM): its loss and gradients ("lm_grad.*").

usage: /usr/bin/python3 tests/ref/make_coca_ref.py [OUTDIR]
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
CFG.update(embed_dim=20, v_layers=1, t_layers=1, batch=4)
DEC = dict(layers=2, heads=4, mlp=80)  # width = text width = embed_dim = 20
ALPHA = 1.0
CLIP_W, CAP_W = 1.0, 2.0


def stack_params(pre, C, H, layers):
    """PRE.resblocks.*, then each PRE.cross_attn block (its ln_1_kv after the
    rest), then PRE.ln_final: open_clip's MultimodalTransformer's order (the
    fusion encoder's too)"""
    p = {}
    for i in range(layers):
        p.update(R.block_params(f"{pre}resblocks.{i}.", C, H))
    for i in range(layers):
        b = R.block_params(f"{pre}cross_attn.{i}.", C, H)
        b[f"{pre}cross_attn.{i}.ln_1_kv.weight"] = R.draw(C, scale=0.1, shift=1.0)
        b[f"{pre}cross_attn.{i}.ln_1_kv.bias"] = R.draw(C, scale=0.1)
        p.update(b)
    p[f"{pre}ln_final.weight"] = R.draw(C, scale=0.1, shift=1.0)
    p[f"{pre}ln_final.bias"] = R.draw(C, scale=0.1)
    return p


def decoder_params(c):
    C = c["t_width"]
    p = stack_params("text_decoder.", C, DEC["mlp"], DEC["layers"])
    p["text_decoder.text_projection"] = R.draw(C, c["vocab_size"], scale=C ** -0.5)
    return p


def cross_block(x, img, p, pre, heads):
    B, T, C = x.shape
    h = F.layer_norm(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], 1e-5)
    kv = F.layer_norm(img, (C,), p[pre + "ln_1_kv.weight"], p[pre + "ln_1_kv.bias"], 1e-5)
    a = F.multi_head_attention_forward(
        h.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1), C, heads,
        p[pre + "attn.in_proj_weight"], p[pre + "attn.in_proj_bias"], None, None, False, 0.0,
        p[pre + "attn.out_proj.weight"], p[pre + "attn.out_proj.bias"], training=False,
        need_weights=False)[0].transpose(0, 1)
    x = x + a
    h = F.layer_norm(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], 1e-5)
    h = F.gelu(F.linear(h, p[pre + "mlp.c_fc.weight"], p[pre + "mlp.c_fc.bias"]))
    return x + F.linear(h, p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])


def image_tower(img, p, c):
    """pooled features (B, E) and every token projected (B, Tv, E)"""
    toks = R.image_tokens(img, p, c) @ p["visual.proj"]
    return toks[:, 0], toks


def text_tower(ids, p, c):
    """pooled features (B, E) and the last block's output (B, T, W), before ln_final"""
    x = R.text_blocks(ids, p, c)
    return R.pool_text(x, ids, p, c), x


def decoder(x, img, p):
    for i in range(DEC["layers"]):
        x = R.resblock(x, p, f"text_decoder.resblocks.{i}.", DEC["heads"], True, 0)
        if img is not None:
            x = cross_block(x, img, p, f"text_decoder.cross_attn.{i}.", DEC["heads"])
    x = F.layer_norm(x, (x.shape[-1],), p["text_decoder.ln_final.weight"],
                     p["text_decoder.ln_final.bias"], 1e-5)
    return x @ p["text_decoder.text_projection"]


def targets(ids):
    B, T = ids.shape
    lab = torch.full((B, T), -100, dtype=torch.int64)
    for b in range(B):
        end = int(ids[b].argmax())
        lab[b, :end] = ids[b, 1:end + 1]
    return lab


def caption_loss(logits, lab, w):
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1),
                         ignore_index=-100, reduction="none")
    n = (lab >= 0).sum()
    return (w.reshape(-1) * ce).sum() / n


def prior(ref_logp, lab):
    w = torch.zeros_like(ref_logp)
    for b in range(lab.shape[0]):
        m = lab[b] >= 0
        raw = (1 - ref_logp[b][m].exp()) ** ALPHA
        w[b][m] = m.sum() * raw / raw.sum()
    return w


def main():
    c = CFG
    p = R.make_params(c)
    p.update(decoder_params(c))
    images, ids = R.make_batch(c)
    lab = targets(ids)
    ref_logp = torch.log(torch.rand(ids.shape, generator=R.GEN, dtype=torch.float64) * 0.98 + 0.01)
    ref_logp = ref_logp.float().double()
    w = prior(ref_logp, lab)

    img_f, img_tok = image_tower(images, p, c)
    txt_f, txt_x = text_tower(ids, p, c)
    logits = decoder(txt_x, img_tok, p)
    cap = caption_loss(logits, lab, w)
    ntp = caption_loss(logits, lab, torch.ones_like(w))
    loss = CLIP_W * R.clip_loss(img_f, txt_f, p["logit_scale"]) + CAP_W * cap
    loss.backward()
    rec = {"config": np.array([c[k] for k in R.CFG] + [DEC["layers"], DEC["heads"], DEC["mlp"]],
                              np.int32),
           "images": images.float().numpy(), "ids": ids.int().numpy(),
           "ref_logp": ref_logp.float().numpy(), "prior_w": w.float().numpy(),
           "loss": np.array([loss.item()], np.float32),
           "caption_loss": np.array([cap.item()], np.float32),
           "ntp_loss": np.array([ntp.item()], np.float32),
           "weights": np.array([CLIP_W, CAP_W, ALPHA], np.float32)}
    rec.update({k: v.detach().float().numpy() for k, v in p.items()})
    R.record_grads(rec, p, "grad.")
    # the text-only language model on the same weights (no image, no cross-attention)
    _, txt_x = text_tower(ids, p, c)
    lm = caption_loss(decoder(txt_x, None, p), lab, torch.ones_like(w))
    lm.backward()
    rec["lm_loss"] = np.array([lm.item()], np.float32)
    R.record_grads(rec, p, "lm_grad.")
    path = os.path.join(OUT, "coca_step.vlpt")
    vlpt.write(path, rec)
    print(f"wrote {path}: loss {loss.item():.6f} (caption {cap.item():.6f}, ntp {ntp.item():.6f}), "
          f"lm {lm.item():.6f}, {len(p)} parameters")


if __name__ == "__main__":
    main()
