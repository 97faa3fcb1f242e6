#!/usr/bin/python3
"""Reference for the fusion encoder (ALBEF/BLIP's, vlp's fusion_cfg): the
small CLIP of make_clip_ref.py plus text_fusion.*, written after ALBEF's
BertLayer with vlp's block structure, in PyTorch, run in float64:
  for each fusion layer l: x = resblock_l(x) (bidirectional self-attention +
  MLP), then x = cross_block_l(x, image tokens) (cross-attention whose keys
  are the image tower's projected tokens, + MLP), ln_final;
  ITM head: 2-way linear (text_fusion.itm_head.weight (2, C), .bias) on the
  fused token at the text's end-of-text position (argmax of its ids);
  MLM head: the fused tokens at given positions @ token_embedding^T +
  text_fusion.mlm_bias (tied to the token embedding, ALBEF/BERT's decoder).
The pairs and positions are fixed (no sampling here): the B positive pairs,
one negative image per text and one negative text per image (as ALBEF/BLIP
draw them, never the positive), ITM labels 1 then 0, 0, on the texts as
they are; MLM on a second text pass over the texts masked at fixed
positions (BERT's three kinds: [MASK], a random token, the token kept; the
[MASK] is id V, embedded as text_fusion.mask_token), fused with their own
images, targets the original ids there. Stores:
  - fusion_step: loss = ITM_W * ITM cross-entropy (mean over 3B pairs) +
    MLM_W * MLM cross-entropy (mean over the positions); the ITM logits
    (3B, 2), the MLM logits (M, V), and the gradient of every parameter
    ("grad.<name>": the towers', the fusion layers', the heads', and the
    token embedding's, which gets both the text tower's and the MLM head's).

usage: /usr/bin/python3 tests/ref/make_fusion_ref.py [OUTDIR]
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlpt  # noqa: E402
import make_clip_ref as R  # noqa: E402
import make_coca_ref as D  # noqa: E402  (its layer stack's parameters, cross block, image and text towers)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

CFG = dict(R.CFG)
CFG.update(embed_dim=20, v_layers=1, t_layers=1, batch=4)
FUS = dict(layers=2, heads=4, mlp=80)  # width = text width = embed_dim = 20
ITM_W, MLM_W = 1.0, 0.5
NEG_IMAGE = [2, 0, 3, 1]  # the negative image of text i (never i)
NEG_TEXT = [1, 3, 0, 2]   # the negative text of image i (never i)


def fusion_params(c):
    C = c["t_width"]
    p = D.stack_params("text_fusion.", C, FUS["mlp"], FUS["layers"])
    p["text_fusion.itm_head.weight"] = R.draw(2, C, scale=C ** -0.5)
    p["text_fusion.itm_head.bias"] = R.draw(2, scale=0.1)
    p["text_fusion.mlm_bias"] = R.draw(c["vocab_size"], scale=0.1)
    p["text_fusion.mask_token"] = R.draw(C, scale=0.5)
    return p


def masked_text_tower(ids, p, c):
    """the text tower's last block output on ids where V is [MASK]"""
    table = torch.cat([p["token_embedding.weight"], p["text_fusion.mask_token"][None]])
    x = F.embedding(ids, table) + p["positional_embedding"]
    for i in range(c["t_layers"]):
        x = R.resblock(x, p, f"transformer.resblocks.{i}.", c["t_heads"], True, c["quick_gelu"])
    return x


def masked(ids, pos, V):
    """BERT's kinds at the positions, in turn: [MASK] (id V), [MASK], a random token, kept"""
    out = ids.clone().reshape(-1)
    for k, q in enumerate(pos):
        kind = k % 4
        if kind < 2:
            out[q] = V
        elif kind == 2:
            out[q] = (int(out[q]) * 7 + 3) % (V - 2)  # a token other than start and end
    return out.reshape(ids.shape)


def fusion(x, img, p):
    """(P, T, C) text tokens, (P, Tk, C) image tokens -> ln_final's output (P, T, C)"""
    for i in range(FUS["layers"]):
        x = R.resblock(x, p, f"text_fusion.resblocks.{i}.", FUS["heads"], False, 0)
        x = D.cross_block(x, img, p, f"text_fusion.cross_attn.{i}.", FUS["heads"])
    return F.layer_norm(x, (x.shape[-1],), p["text_fusion.ln_final.weight"], p["text_fusion.ln_final.bias"], 1e-5)


def mlm_positions(ids):
    """flat positions (row * T + t) of the positive pairs, tokens between the
    start and the end token: every other one, from the first"""
    B, T = ids.shape
    pos = []
    for b in range(B):
        end = int(ids[b].argmax())
        pos += [b * T + t for t in range(1, end, 2)]
    return pos


def main():
    c = CFG
    p = R.make_params(c)
    p.update(fusion_params(c))
    images, ids = R.make_batch(c)
    B, T = ids.shape
    _, img_tok = D.image_tower(images, p, c)
    _, txt_x = D.text_tower(ids, p, c)
    text_rows = list(range(B)) + list(range(B)) + NEG_TEXT
    image_rows = list(range(B)) + NEG_IMAGE + list(range(B))
    fused = fusion(txt_x[text_rows], img_tok[image_rows], p)
    eot = ids.argmax(dim=1)[text_rows]
    cls = fused[torch.arange(len(text_rows)), eot]
    itm = F.linear(cls, p["text_fusion.itm_head.weight"], p["text_fusion.itm_head.bias"])
    itm_labels = torch.tensor([1] * B + [0] * (2 * B))
    pos = mlm_positions(ids)
    ids_masked = masked(ids, pos, c["vocab_size"])
    txt_masked = masked_text_tower(ids_masked, p, c)
    fused_masked = fusion(txt_masked, img_tok, p)
    tok = fused_masked.reshape(B * T, -1)[pos]
    mlm = tok @ p["token_embedding.weight"].T + p["text_fusion.mlm_bias"]
    mlm_targets = ids.reshape(-1)[pos]
    itm_loss = F.cross_entropy(itm, itm_labels)
    mlm_loss = F.cross_entropy(mlm, mlm_targets)
    loss = ITM_W * itm_loss + MLM_W * mlm_loss
    loss.backward()
    rec = {"config": np.array([c[k] for k in R.CFG] + [FUS["layers"], FUS["heads"], FUS["mlp"]], np.int32),
           "images": images.float().numpy(), "ids": ids.int().numpy(), "ids_masked": ids_masked.int().numpy(),
           "text_rows": np.array(text_rows, np.int32), "image_rows": np.array(image_rows, np.int32),
           "itm_labels": itm_labels.int().numpy(), "mlm_pos": np.array(pos, np.int32),
           "mlm_targets": mlm_targets.int().numpy(),
           "itm_logits": itm.detach().float().numpy(), "mlm_logits": mlm.detach().float().numpy(),
           "loss": np.array([loss.item()], np.float32), "itm_loss": np.array([itm_loss.item()], np.float32),
           "mlm_loss": np.array([mlm_loss.item()], np.float32), "weights": np.array([ITM_W, MLM_W], np.float32)}
    rec.update({k: v.detach().float().numpy() for k, v in p.items()})
    R.record_grads(rec, p, "grad.")
    path = os.path.join(OUT, "fusion_step.vlpt")
    vlpt.write(path, rec)
    print(f"wrote {path}: loss {loss.item():.6f} (itm {itm_loss.item():.6f}, mlm {mlm_loss.item():.6f}), "
          f"{len(pos)} MLM positions, {len(p)} parameters")


if __name__ == "__main__":
    main()
