#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/NAME): small valid
inputs of every kind a target parses, and the inputs of past findings.
Needs python3-pil (scripts/deps.sh --ref) for the images. Run from the
repository root; the result is committed."""
import gzip
import io
import json
import os
import struct
import tarfile

from PIL import Image

C = "tests/fuzz/corpus"


def put(target, name, data):
    os.makedirs(f"{C}/{target}", exist_ok=True)
    with open(f"{C}/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, meta=None):
    hdr, blob = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + blob


def image(fmt, mode="RGB", size=(16, 12), **kw):
    im = Image.new(mode, size)
    for x in range(size[0]):
        for y in range(size[1]):
            im.putpixel((x, y), (x * 16 % 256, y * 20 % 256, 128) if mode in ("RGB", "RGBA") else (x * 7 + y) % 256)
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def tar_of(members):
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return t.getvalue()


def raw_tar_member(name, data, kind=b"0"):
    """a ustar header and body by hand (tarfile will not write a broken pax record)"""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[124:136] = b"%011o\0" % len(data)
    h[156:157] = kind
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + data + b"\0" * ((512 - len(data) % 512) % 512)


def shards_input(per, samples):
    """fuzz_shards.c's input: samples a shard, then (caption, image bytes) each"""
    out = bytes([per - 1])
    for caption, img in samples:
        c = caption if isinstance(caption, bytes) else caption.encode()
        out += bytes([len(c)]) + c + struct.pack("<H", len(img)) + img
    return out


def npy(rows, cols, payload):
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    d += " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode() + payload


def main():
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    put("safetensors", "f32_bf16_meta", safetensors(
        {"w": ("F32", [2, 2], f32), "b": ("BF16", [3], b"\x80\x3f" * 3), "h": ("F16", [1], b"\x00\x3c")},
        {"format": "pt", "vlp.config": json.dumps({"embed_dim": 8})}))
    put("safetensors", "empty", safetensors({}))
    put("safetensors", "f4_zero_dim_then_huge", safetensors(
        {"visual.conv1.weight": ("F32", [0, 3, 1, 2147483647], b""), "p": ("F32", [5, 1], b"\0" * 20)}))
    jpg, png = image("JPEG", quality=80), image("PNG")
    put("image", "rgb.jpg", jpg)
    put("image", "rgb.png", png)
    put("image", "rgba.png", image("PNG", "RGBA"))
    put("image", "grey.png", image("PNG", "L"))
    put("image", "palette.png", image("PNG", "P"))
    put("image", "lossy.webp", image("WEBP", quality=70))
    put("image", "lossless.webp", image("WEBP", lossless=True))
    put("image", "progressive.jpg", image("JPEG", progressive=True))
    put("image", "truncated.jpg", jpg[: len(jpg) // 2])
    for name in ("cmyk.jpg", "grey16.png", "la_alpha.png", "palette_trns.png", "animated.webp", "palette_trns.gif",
                 "animated.gif", "tiff_palette.tif", "tiff_jpeg.tif", "tiff_rgba.tif", "bmp_palette4.bmp",
                 "bmp_rgb565.bmp", "bmp_os2_palette8.bmp", "bmp_rgba32_v5.bmp"):  # every decoder's modes (tests/ref/make_modes_ref.py)
        with open(f"tests/ref/modes/{name}", "rb") as f:
            put("image", name, f.read())
    webp = image("WEBP", quality=70)
    put("shards", "three_two_a_shard", shards_input(2, [("a red dog", png), ("caf\xe9 latin-1".encode("latin-1"), jpg),
                                                        ("日本語 &amp; \\u00e9 \"q\"", webp)]))
    put("shards", "one_a_shard_with_blank", shards_input(1, [("x", png), ("  ", jpg), ("not an image", b"GIF89a")]))
    big = bytearray(image("JPEG", size=(64, 64), quality=90)[:687])
    sof = next(i for i in range(2, len(big)) if big[i] == 0xFF and 0xC0 <= big[i + 1] <= 0xC2)
    big[sof + 5:sof + 9] = b"\x40\x00\x40\x00"
    put("image", "f5_bomb.jpg", bytes(big))
    put("npy", "2x3", npy(2, 3, struct.pack("<6f", *range(6))))
    put("npy", "f2_claims_rows", npy(1700000000, 1, b""))
    for name in ("pool_first", "clip_loss_b13"):
        with open(f"tests/ref/{name}.vlpt", "rb") as f:
            put("vlpt", name, f.read())
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for key, data in [("000.jpg", jpg), ("000.json", json.dumps({"title": "a cat", "coarse": "an animal"}).encode()),
                          ("001.png", png), ("001.txt", b"a dog on grass"), ("002.webp", image("WEBP"))]:
            info = tarfile.TarInfo(key)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    put("tar", "three_samples.tar", t.getvalue())
    put("pool", "three_samples.tar", t.getvalue())  # every member kept and written back
    put("pool", "table.tsv", b"filepath\ttitle\tlabel\nimg/a.png\ta red square\tred\nb.png\t\t\nc.png\tshort\n")
    # a pax record whose length is near 2^64, after a good one (i + len wraps)
    put("tar", "pax_length_near_2_64", raw_tar_member(b"pax", b"9 a=bbbb\n18446744073709551615 path=x\n", b"x") +
        raw_tar_member(b"000.txt", b"a cat") + b"\0" * 1024)
    put("pool", "odd_names.tar", tar_of([  # a path in the key, an extension longer than 40 bytes (it was cut)
        ("d/000.a.jpg", jpg), ("d/000.a.txt", b"a cat"), ("001.png", png), ("001.txt", b"x"),
        ("001." + "e" * 44 + "1", b"one"), ("001." + "e" * 44 + "2", b"two")]))
    put("matcher", "metaclip", b"red\ntop left\nsquare\nleft\n\0A red square, at the top left.")
    put("matcher", "overlaps", b"a\naa\naaa\na a\n\0aaaa a a aaa:a")
    put("table", "tsv", b"\0filepath\ttitle\nimg/a.png\ta red square\nimg/b.png\ta blue one\n")
    put("table", "csv_quoted", b'\x01filepath,title\n"img/a,1.png","a ""quoted"" caption, with a comma"\nb.png,plain\n')
    put("table", "tsv_label", b"\x02filepath\ttitle\tlabel\na.png\tone\tcat\nb.png\ttwo\t\n")
    for i, s in enumerate(["a photo of a cat", "H\u00e9llo w\u00f6rld &amp; don't \U0001F431 it's 3.14",
                           "   lots\tof\n\nwhitespace   ", "q" * 3000]):
        put("bpe_encode", f"text{i}", s.encode())
    put("bpe_encode", "invalid_utf8", b"\xff\xfe a \xc3\x28 \xed\xa0\x80 z")
    with gzip.open("vocab/bpe_simple_vocab_16e6.txt.gz", "rt", encoding="utf-8") as f:
        head = "".join(next(f) for _ in range(300))
    put("merges", "openai_head", head)
    put("merges", "openai_head.gz", gzip.compress(head.encode()))
    put("merges", "f3_long_merge", "#version: 0.2\nq q\n" + "q" * 700 + " " + "q" * 700 + "\n")
    for name in ("tiny", "tiny-coca", "tiny-mae", "ViT-B-32", "ViT-H-14"):
        with open(f"configs/{name}.json") as f:
            put("config", name, f.read())
    with open("configs/tiny.json") as f:
        put("config", "model_cfg_wrapped", json.dumps({"model_cfg": json.load(f)}))
    opts = {"objective": "coca", "batch": 8, "accum": 2, "steps": 100, "warmup": 10, "lr": 0.001, "beta1": 0.9,
            "beta2": 0.98, "eps": 1e-6, "weight_decay": 0.2, "grad_clip": 1.0, "seed": "7", "precision": "bf16",
            "lock_image": -1, "decay_embeddings": True, "clip_weight": 1.0, "caption_weight": 2.0,
            "prior": True, "prior_alpha": 0.5}
    put("state", "coca", json.dumps(opts))
    legacy = {k: v for k, v in opts.items() if k not in ("objective", "precision", "decay_embeddings", "prior")}
    put("state", "legacy_all_keys", json.dumps(dict(legacy, mask_ratio=0.75, mae_weight=1.0)))
    put("state", "f1_unknown_objective", json.dumps(dict(opts, objective="x" * 200)))
    # run files (fuzz_run.c): a training state, data.json ('d'), a rank's position ('p')
    meta = {"format": "vlp-train-state", "version": "1", "step": "12", "epoch": "3", "index": "40",
            "checkpoint": "ckpt-00000012.safetensors", "options": json.dumps(opts), "world": "2"}
    moments = {"exp_avg": ("F32", [4], f32), "exp_avg_sq": ("F32", [4], f32)}
    put("run", "state", safetensors(moments, meta))
    put("run", "state_no_world", safetensors(moments, {k: v for k, v in meta.items() if k != "world"}))
    put("run", "f31_epoch_2_63", safetensors(moments, dict(meta, epoch="9223372036854775807")))
    data = {"train_data": "/d/train-{000..003}.tar", "data": "/d/emoji", "vendors": "google,apple",
            "image_key": "jpg;png", "caption_key": "txt", "alt_caption_key": "alt", "alt_caption_prob": 0.25, "shuffle_buffer": 1000,
            "white_background": True, "hflip": False, "crop_scale": 0.9, "val_data": "/d/val.tsv",
            "zeroshot_data": "/d/zs.tsv", "label_key": "label", "templates": "default", "models": {}}
    put("run", "data_json", "d" + json.dumps(data))
    put("run", "f31_crop_scale_negative", "d" + json.dumps(dict(data, crop_scale=-1)))
    put("run", "f31_shuffle_buffer_huge", "d" + json.dumps(dict(data, shuffle_buffer=2147483647)))
    put("run", "f31_templates_null", "d" + json.dumps(dict(data, templates=None)))
    put("run", "pos", "p3 17\n")
    put("run", "f31_pos_epoch_2_63", "p9223372036854775807 0\n")


if __name__ == "__main__":
    main()
