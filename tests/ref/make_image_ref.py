#!/usr/bin/python3
"""Reference pixels for tests/test_image.c, from PIL (the library open_clip's
transforms run on): a deterministic 97x61 RGB image saved as PNG and JPEG,
PIL's decode of both, PIL's bicubic resizes (down, up, a crop box, non-square)
and the CLIP eval transform (torchvision's Resize(S) + CenterCrop(S) written
out with PIL: short side to S, long side int(S * long / short), crop offsets
round((size - S) / 2)) normalised with OpenAI's mean/std.

usage: /usr/bin/python3 tests/ref/make_image_ref.py [OUTDIR]
"""
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlpt  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def source():
    rng = np.random.default_rng(7)
    h, w = 61, 97
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    img += rng.normal(0, 40, img.shape)
    img[20:30, 40:60] = [250, 10, 10]  # a hard edge
    return np.clip(img, 0, 255).astype(np.uint8)


def eval_transform(im, S):
    w, h = im.size
    if w <= h:
        rw, rh = S, int(S * h / w)
    else:
        rw, rh = int(S * w / h), S
    r = im.resize((rw, rh), Image.BICUBIC)
    left, top = int(round((rw - S) / 2.0)), int(round((rh - S) / 2.0))
    c = np.asarray(r.crop((left, top, left + S, top + S)), dtype=np.float64) / 255.0
    return ((c - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def main():
    src = Image.fromarray(source())
    png = os.path.join(OUT, "img_src.png")
    jpg = os.path.join(OUT, "img_src.jpg")
    src.save(png)
    src.save(jpg, quality=90)
    t = {}
    t["png_pixels"] = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
    jim = Image.open(jpg).convert("RGB")
    t["jpg_pixels"] = np.asarray(jim).astype(np.int32)
    t["resize_down"] = np.asarray(src.resize((40, 25), Image.BICUBIC)).astype(np.int32)
    t["resize_up"] = np.asarray(src.resize((150, 90), Image.BICUBIC)).astype(np.int32)
    t["resize_box"] = np.asarray(src.resize((31, 17), Image.BICUBIC, box=(13, 7, 13 + 50, 7 + 40))).astype(np.int32)
    t["resize_jpg"] = np.asarray(jim.resize((33, 21), Image.BICUBIC)).astype(np.int32)
    t["eval_32"] = eval_transform(src, 32)
    vlpt.write(os.path.join(OUT, "image.vlpt"), t)
    print(f"wrote {png}, {jpg} and {len(t)} reference tensors to {OUT}/image.vlpt")


if __name__ == "__main__":
    main()
