#!/usr/bin/python3
"""The Python peer of bench/data: what open_clip's data path does per image with
PIL and numpy (torchvision is not in Debian's torch): decode + convert('RGB'),
bicubic resize, crop, /255, normalise, CHW — single thread, best of 3 rounds.
usage: data.py IMAGE.jpg IMAGE.png [reps]"""
import io
import random
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def eval_tf(b, S):
    im = Image.open(io.BytesIO(b)).convert("RGB")
    w, h = im.size
    rw, rh = (S, int(S * h / w)) if w <= h else (int(S * w / h), S)
    im = im.resize((rw, rh), Image.BICUBIC)
    l, t = int(round((rw - S) / 2)), int(round((rh - S) / 2))
    a = np.asarray(im.crop((l, t, l + S, t + S)), dtype=np.float32) / 255.0
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def train_tf(b, S, rng):
    im = Image.open(io.BytesIO(b)).convert("RGB")
    w, h = im.size
    s = rng.uniform(0.9, 1.0)
    cw = ch = int(round((w * h * s) ** 0.5))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.resize((S, S), Image.BICUBIC, box=(x, y, x + cw, y + ch))
    a = np.asarray(im, dtype=np.float32) / 255.0
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def rate(fn, reps):
    best = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return 1.0 / best


def main():
    jpg, png = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    rng = random.Random(1)
    print(f"peer jpeg {rate(lambda: eval_tf(jpg, 224), reps):.1f}")
    print(f"peer png {rate(lambda: train_tf(png, 64, rng), 4 * reps):.1f}")


if __name__ == "__main__":
    main()
