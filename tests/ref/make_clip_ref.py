#!/usr/bin/python3
"""Reference for a whole CLIP training step: a small CLIP written here in
PyTorch with open_clip's architecture and state-dict names (pre-LN blocks
through torch's own multi_head_attention_forward, ln_post/ln_final, token-0 and
argmax(ids) pooling, x @ proj, normalised features, ClipLoss), run in float64
on float32-drawn weights and batch. Stores the config, the state dict, the
batch, the loss and the gradient of every parameter ("grad.<name>").

usage: /usr/bin/python3 tests/ref/make_clip_ref.py [OUTDIR]
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlpt  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
GEN = torch.Generator().manual_seed(77)

CFG = dict(embed_dim=12, image_size=16, patch_size=4, v_width=24, v_layers=2, v_heads=3,
           v_mlp=96, context_length=9, vocab_size=50, t_width=20, t_layers=2, t_heads=4,
           t_mlp=80, quick_gelu=0, batch=5)


def draw(*shape, scale=1.0, shift=0.0):
    x = (torch.randn(*shape, generator=GEN, dtype=torch.float64) * scale + shift).float()
    return x.double().requires_grad_(True)


def block_params(prefix, C, H):
    s = C ** -0.5
    return {
        prefix + "ln_1.weight": draw(C, scale=0.1, shift=1.0), prefix + "ln_1.bias": draw(C, scale=0.1),
        prefix + "attn.in_proj_weight": draw(3 * C, C, scale=s), prefix + "attn.in_proj_bias": draw(3 * C, scale=0.1),
        prefix + "attn.out_proj.weight": draw(C, C, scale=s), prefix + "attn.out_proj.bias": draw(C, scale=0.1),
        prefix + "ln_2.weight": draw(C, scale=0.1, shift=1.0), prefix + "ln_2.bias": draw(C, scale=0.1),
        prefix + "mlp.c_fc.weight": draw(H, C, scale=s), prefix + "mlp.c_fc.bias": draw(H, scale=0.1),
        prefix + "mlp.c_proj.weight": draw(C, H, scale=H ** -0.5), prefix + "mlp.c_proj.bias": draw(C, scale=0.1),
    }


def make_params(c):
    g = c["image_size"] // c["patch_size"]
    Wv, Wt, E = c["v_width"], c["t_width"], c["embed_dim"]
    p = {
        "positional_embedding": draw(c["context_length"], Wt, scale=0.1),
        "text_projection": draw(Wt, E, scale=Wt ** -0.5),
        "logit_scale": torch.tensor(math.log(1 / 0.07), dtype=torch.float32).double().requires_grad_(True),
        "visual.class_embedding": draw(Wv, scale=Wv ** -0.5),
        "visual.positional_embedding": draw(g * g + 1, Wv, scale=Wv ** -0.5),
        "visual.proj": draw(Wv, E, scale=Wv ** -0.5),
        "visual.conv1.weight": draw(Wv, 3, c["patch_size"], c["patch_size"], scale=0.2),
        "visual.ln_pre.weight": draw(Wv, scale=0.1, shift=1.0), "visual.ln_pre.bias": draw(Wv, scale=0.1),
    }
    for i in range(c["v_layers"]):
        p.update(block_params(f"visual.transformer.resblocks.{i}.", Wv, c["v_mlp"]))
    p["visual.ln_post.weight"] = draw(Wv, scale=0.1, shift=1.0)
    p["visual.ln_post.bias"] = draw(Wv, scale=0.1)
    p["token_embedding.weight"] = draw(c["vocab_size"], Wt, scale=0.5)
    for i in range(c["t_layers"]):
        p.update(block_params(f"transformer.resblocks.{i}.", Wt, c["t_mlp"]))
    p["ln_final.weight"] = draw(Wt, scale=0.1, shift=1.0)
    p["ln_final.bias"] = draw(Wt, scale=0.1)
    return p


def act(x, quick):
    return x * torch.sigmoid(1.702 * x) if quick else F.gelu(x)


def resblock(x, p, pre, heads, causal, quick):
    B, T, C = x.shape
    h = F.layer_norm(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], 1e-5)
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu_(1) if causal else None
    hs = h.transpose(0, 1)
    a = F.multi_head_attention_forward(
        hs, hs, hs, C, heads, p[pre + "attn.in_proj_weight"], p[pre + "attn.in_proj_bias"],
        None, None, False, 0.0, p[pre + "attn.out_proj.weight"], p[pre + "attn.out_proj.bias"],
        training=False, need_weights=False, attn_mask=mask)[0].transpose(0, 1)
    x = x + a
    h = F.layer_norm(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], 1e-5)
    h = act(F.linear(h, p[pre + "mlp.c_fc.weight"], p[pre + "mlp.c_fc.bias"]), quick)
    return x + F.linear(h, p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])


def image_tokens(img, p, c):
    """every token of the image tower after ln_post (B, 1 + patches, width)"""
    x = F.conv2d(img, p["visual.conv1.weight"], stride=c["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    cls = p["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + p["visual.positional_embedding"]
    x = F.layer_norm(x, (c["v_width"],), p["visual.ln_pre.weight"], p["visual.ln_pre.bias"], 1e-5)
    for i in range(c["v_layers"]):
        x = resblock(x, p, f"visual.transformer.resblocks.{i}.", c["v_heads"], False, c["quick_gelu"])
    return F.layer_norm(x, (c["v_width"],), p["visual.ln_post.weight"], p["visual.ln_post.bias"], 1e-5)


def encode_image(img, p, c):
    return image_tokens(img, p, c)[:, 0] @ p["visual.proj"]


def text_blocks(ids, p, c):
    """the text tower's last block output (B, T, width), before ln_final"""
    x = F.embedding(ids, p["token_embedding.weight"]) + p["positional_embedding"]
    for i in range(c["t_layers"]):
        x = resblock(x, p, f"transformer.resblocks.{i}.", c["t_heads"], True, c["quick_gelu"])
    return x


def pool_text(x, ids, p, c):
    x = F.layer_norm(x, (c["t_width"],), p["ln_final.weight"], p["ln_final.bias"], 1e-5)
    return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ p["text_projection"]


def encode_text(ids, p, c):
    return pool_text(text_blocks(ids, p, c), ids, p, c)


def clip_loss(img_f, txt_f, logit_scale):
    img_f, txt_f = F.normalize(img_f, dim=-1), F.normalize(txt_f, dim=-1)
    logits = logit_scale.exp() * img_f @ txt_f.T
    labels = torch.arange(img_f.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def record_grads(rec, p, prefix):
    """rec[prefix + name] = each parameter's gradient (zeros where none reached
    it), float32; the gradients are cleared for the next backward"""
    for k, v in p.items():
        rec[prefix + k] = (v.grad if v.grad is not None else torch.zeros_like(v)).float().numpy()
        v.grad = None


def make_batch(c):
    B, T, V = c["batch"], c["context_length"], c["vocab_size"]
    images = draw(B, 3, c["image_size"], c["image_size"]).detach()
    ids = torch.zeros(B, T, dtype=torch.int64)
    for b in range(B):  # start token, words, end token (the largest id), padding
        n = 2 + b % (T - 2)
        ids[b, 0] = V - 2
        ids[b, 1:n] = torch.randint(1, V - 2, (n - 1,), generator=GEN)
        ids[b, n] = V - 1
    return images, ids


def main():
    c = CFG
    p = make_params(c)
    images, ids = make_batch(c)
    loss = clip_loss(encode_image(images, p, c), encode_text(ids, p, c), p["logit_scale"])
    loss.backward()
    rec = {"config": np.array([c[k] for k in CFG], np.int32), "images": images.float().numpy(),
           "ids": ids.int().numpy(), "loss": np.array([loss.item()], np.float32)}
    rec.update({k: v.detach().float().numpy() for k, v in p.items()})
    record_grads(rec, p, "grad.")
    # 5 AdamW steps from the same weights on the same batch: open_clip's
    # optimizer and its decay groups (main.py: none for ndim < 2 or a name
    # containing bn, ln, bias or logit_scale; the embeddings decay), warmup 2 +
    # cosine over 5, clipping at norm 1.0, logit_scale clamped to [0, ln 100]
    q = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    decay = [v for k, v in q.items() if v.ndim >= 2 and not any(
        t in k for t in ("bn", "ln", "bias", "logit_scale"))]
    rest = [v for k, v in q.items() if not any(v is d for d in decay)]
    base_lr, warmup, steps = 1e-3, 2, 5
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=base_lr, betas=(0.9, 0.98), eps=1e-6)
    losses = []
    for step in range(steps):
        lr = base_lr * (step + 1) / warmup if step < warmup else \
            0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))) * base_lr
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        l = clip_loss(encode_image(images, q, c), encode_text(ids, q, c), q["logit_scale"])
        l.backward()
        torch.nn.utils.clip_grad_norm_(list(q.values()), 1.0)
        opt.step()
        with torch.no_grad():
            q["logit_scale"].clamp_(0, math.log(100))
        losses.append(l.item())
    rec["adamw_losses"] = np.array(losses, np.float32)
    rec["adamw_final.visual.proj"] = q["visual.proj"].detach().float().numpy()
    rec["adamw_final.logit_scale"] = q["logit_scale"].detach().float().numpy()
    path = os.path.join(OUT, "clip_step.vlpt")
    vlpt.write(path, rec)
    print(f"wrote {path}: loss {loss.item():.6f}, {len(p)} parameters")


if __name__ == "__main__":
    main()
