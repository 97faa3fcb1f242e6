#!/usr/bin/python3
"""Reference pixels for every image mode vlp decodes (tests/test_image_modes.c):
small images in each mode Pillow opens (RGBA and LA with transparent and
half-transparent pixels, palette with and without a transparent index,
bilevel, grey, 16-bit grey, CMYK JPEG, grey JPEG, WebP lossless with alpha,
lossy, animated, GIF with and without a transparent index, grey, animated,
TIFF: RGB, RGBA, grey, bilevel, palette, CMYK, grey + alpha, JPEG-compressed,
BMP: 24-bit, 32-bit (a fourth byte Pillow ignores), 32-bit with an alpha mask,
16-bit 5-5-5 and 5-6-5, 8-, 4- and 1-bit palettes, grey, bilevel, top-down,
an OS/2 header, a gap before the pixels; tiled TIFF made by libtiff's tiffcp:
RGB, bilevel, palette, RGBA, JPEG YCbCr), written to tests/ref/modes/, and for each what Pillow and
torchvision give, as open_clip's transform runs on an image as Image.open
gives it (its CSV loader):
  FILE:decode   convert('RGB')                                (h, w, 3)
  FILE:eval_S   Resize(S, BICUBIC) + CenterCrop(S), then RGB  (S, S, 3)
                for S = 24 (a resize) and S = the short side (none)
  FILE:crop     resized_crop(box, 20x20, BICUBIC), then RGB   (20, 20, 3)
The list, the sizes and the boxes go to tests/ref/modes/MANIFEST.
Runs with Debian's python3-pil (9.4), libtiff-tools, and python3-torchvision when present
(else the same calls written out with PIL: torchvision's PIL path is
img.resize((w, h), BICUBIC) and img.crop; see docs/data.md).

usage: /usr/bin/python3 tests/ref/make_modes_ref.py
"""
import io
import os
import sys

import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlpt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "modes")
try:
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode
    BICUBIC = InterpolationMode.BICUBIC
except ImportError:
    TF = None


def resize_short(im, S):
    if TF:
        return TF.resize(im, S, interpolation=BICUBIC)
    w, h = im.size
    rw, rh = (S, int(S * h / w)) if w <= h else (int(S * w / h), S)
    return im if (rw, rh) == (w, h) else im.resize((rw, rh), Image.BICUBIC)


def center_crop(im, S):
    if TF:
        return TF.center_crop(im, S)
    w, h = im.size
    top, left = int(round((h - S) / 2.0)), int(round((w - S) / 2.0))
    return im.crop((left, top, left + S, top + S))


def resized_crop(im, x, y, w, h, S):
    if TF:
        return TF.resized_crop(im, y, x, h, w, [S, S], interpolation=BICUBIC)
    return im.crop((x, y, x + w, y + h)).resize((S, S), Image.BICUBIC)


def field(w, h, seed):
    """a smooth gradient with noise and a hard edge: resampling has work to do"""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1) + rng.normal(0, 30, (h, w, 3))
    img[h // 3:h // 2, w // 3:w // 2] = [250, 10, 10]
    return np.clip(img, 0, 255).astype(np.uint8)


def alpha(w, h, seed):
    """transparent, half-transparent and opaque regions"""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.where(x < w // 4, 0, np.where(x < w // 2, (y * 255 // h), 255)).astype(np.int32)
    a[rng.random((h, w)) < 0.1] = 128
    return a.astype(np.uint8)


def bmp(w, h, bits, rows, palette=b"", compression=0, masks=None, hsz=40, top_down=False, gap=0):
    """a BMP written byte by byte: Pillow writes only 1, L, P, RGB and RGBA
    (as 32-bit without alpha), so the other layouts are made here. rows:
    the pixel rows top first, each already packed to `bits` (padded here)"""
    import struct
    stride = ((w * bits + 31) >> 3) & ~3
    body = b"".join(r.ljust(stride, b"\0") for r in (rows if top_down else rows[::-1]))
    if hsz == 12:
        head = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        head = struct.pack("<IiiHHIIiiII", hsz, w, -h if top_down else h, 1, bits, compression, len(body), 2835,
                           2835, len(palette) // 4 if palette else 0, 0)
        if hsz >= 108:
            m = masks or (0, 0, 0, 0)
            head += struct.pack("<IIII", *m) + b"sRGB" + b"\0" * 48 + b"\0" * (hsz - 108)
        elif masks:
            head += struct.pack("<III", *masks[:3])
    offset = 14 + len(head) + len(palette) + gap
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + head + palette + b"\0" * gap + body


def packed(idx, bits):
    """rows of palette indices packed at 1, 4 or 8 bits, high bits first"""
    rows = []
    for r in idx:
        if bits == 8:
            rows.append(bytes(int(v) for v in r))
            continue
        per, out = 8 // bits, bytearray()
        for i in range(0, len(r), per):
            byte = 0
            for j, v in enumerate(r[i:i + per]):
                byte |= int(v) << (8 - bits * (j + 1))
            out.append(byte)
        rows.append(bytes(out))
    return rows


def tiled(data, *args):
    """the TIFF rewritten in 16x16 tiles by tiffcp (Pillow writes strips only)"""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.tif"), os.path.join(d, "out.tif")
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["tiffcp", "-t", "-w", "16", "-l", "16", *args, src, dst], check=True)
        with open(dst, "rb") as f:
            return f.read()


def bmp_images(out):
    import struct
    rgb = field(37, 29, 15)
    bgr = [bytes(r[:, ::-1].tobytes()) for r in rgb]
    out["bmp_rgb24_topdown.bmp"] = bmp(37, 29, 24, bgr, top_down=True)
    out["bmp_rgb24_gap.bmp"] = bmp(37, 29, 24, bgr, gap=6)
    a = alpha(37, 29, 16)
    bgra = [bytes(np.concatenate([r[:, ::-1], al[:, None]], 1).tobytes()) for r, al in zip(rgb, a)]
    out["bmp_rgba32_v5.bmp"] = bmp(37, 29, 32, bgra, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000),
                                   hsz=124)
    out["bmp_bgrx32.bmp"] = bmp(37, 29, 32, bgra)  # the fourth byte is not alpha
    clear = [bytes(np.concatenate([r[:, ::-1], np.zeros((37, 1), np.uint8)], 1).tobytes()) for r in rgb]
    out["bmp_rgba32_clear.bmp"] = bmp(37, 29, 32, clear, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000),
                                      hsz=124)  # an alpha mask, every alpha 0: transparent in Pillow
    out["bmp_masks_zero.bmp"] = bmp(37, 29, 32, bgra, compression=3, masks=(0, 0, 0, 0), hsz=108)  # Pillow: BGRA
    out["bmp_bgr24_bitfields.bmp"] = bmp(37, 29, 24, bgr, compression=3, masks=(0xFF0000, 0xFF00, 0xFF))
    out["bmp_rgb24_no_last_pad.bmp"] = bmp(37, 29, 24, bgr)[:-((-37 * 3) % 4)]  # Pillow needs no padding after the last row
    v = rgb.astype(np.uint32)
    p555 = (v[..., 0] >> 3) << 10 | (v[..., 1] >> 3) << 5 | (v[..., 2] >> 3)
    p565 = (v[..., 0] >> 3) << 11 | (v[..., 1] >> 2) << 5 | (v[..., 2] >> 3)
    out["bmp_rgb555.bmp"] = bmp(37, 29, 16, [b"".join(struct.pack("<H", int(p)) for p in r) for r in p555])
    out["bmp_rgb565.bmp"] = bmp(37, 29, 16, [b"".join(struct.pack("<H", int(p)) for p in r) for r in p565],
                                compression=3, masks=(0xF800, 0x7E0, 0x1F))
    rng = np.random.default_rng(17)
    pal16 = bytes(rng.integers(0, 256, 16 * 4, dtype=np.uint8))
    idx = (np.add.outer(np.arange(29), np.arange(37)) // 3 + rng.integers(0, 3, (29, 37))) % 18  # 16, 17: past it
    out["bmp_palette4.bmp"] = bmp(37, 29, 4, packed(idx % 16, 4), palette=pal16)
    out["bmp_palette8_short.bmp"] = bmp(37, 29, 8, packed(idx, 8), palette=pal16)  # indices past the palette
    out["bmp_palette1.bmp"] = bmp(37, 29, 1, packed(idx % 2, 1), palette=bytes([200, 10, 30, 0, 40, 220, 90, 0]))
    os2pal = bytes(rng.integers(0, 256, 256 * 3, dtype=np.uint8))
    out["bmp_os2_palette8.bmp"] = bmp(37, 29, 8, packed((idx * 14 + 250) % 256, 8), palette=os2pal, hsz=12)


def images():
    """name -> encoded bytes"""
    out = {}

    def save(name, im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        out[name] = b.getvalue()

    rgb = field(64, 50, 1)
    rgba = Image.fromarray(np.dstack([rgb, alpha(64, 50, 2)]), "RGBA")
    save("rgba_alpha.png", rgba, "PNG")
    grey = Image.fromarray(field(43, 33, 3)[:, :, 0])
    save("la_alpha.png", Image.merge("LA", [grey, Image.fromarray(alpha(43, 33, 4))]), "PNG")
    save("grey.png", grey, "PNG")
    save("bilevel.png", grey.convert("1"), "PNG")
    g16 = (np.arange(40 * 31).reshape(31, 40) * 45 % 65536).astype(np.int32)
    g16[:10, :10] = np.arange(100).reshape(10, 10) * 3  # values below 256 too
    save("grey16.png", Image.fromarray(g16, "I"), "PNG")  # written as 16-bit grey
    pal = Image.fromarray(field(41, 31, 5)).quantize(16, method=Image.Quantize.MEDIANCUT)
    save("palette.png", pal, "PNG")
    save("palette_trns.png", pal, "PNG", transparency=3)
    save("palette_4bit.png", pal, "PNG", bits=4)
    cmyk = Image.fromarray(field(46, 37, 6)).convert("CMYK")
    save("cmyk.jpg", cmyk, "JPEG", quality=92)
    save("grey.jpg", grey, "JPEG", quality=90)
    save("progressive.jpg", Image.fromarray(field(45, 34, 7)), "JPEG", quality=85, progressive=True)
    save("rgba_lossless.webp", rgba.resize((44, 34)), "WEBP", lossless=True)
    save("rgba_lossy.webp", rgba.resize((44, 34)), "WEBP", quality=80)
    save("rgb_lossy.webp", Image.fromarray(field(41, 32, 8)), "WEBP", quality=80)
    frames = [Image.fromarray(field(36, 27, s)) for s in (9, 10)]
    save("animated.webp", frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    save("palette.gif", pal, "GIF")  # interlaced: Pillow's default
    save("palette_trns.gif", pal, "GIF", transparency=3)
    save("grey.gif", grey, "GIF")  # a grey-ramp table: opens as L
    gframes = [Image.fromarray(field(36, 27, s)).quantize(32) for s in (11, 12)]
    save("animated.gif", gframes[0], "GIF", save_all=True, append_images=gframes[1:], duration=100, loop=0)
    save("tiff_rgb_lzw.tif", Image.fromarray(field(39, 30, 13)), "TIFF", compression="tiff_lzw")
    save("tiff_rgba.tif", rgba.resize((40, 31)), "TIFF", compression="tiff_deflate")
    save("tiff_grey.tif", grey, "TIFF", compression="packbits")
    save("tiff_bilevel.tif", grey.convert("1"), "TIFF", compression="group4")
    save("tiff_palette.tif", pal, "TIFF")
    save("tiff_cmyk.tif", cmyk, "TIFF")
    save("tiff_la.tif", Image.merge("LA", [grey, Image.fromarray(alpha(43, 33, 4))]), "TIFF")
    save("tiff_jpeg.tif", Image.fromarray(field(40, 32, 14)), "TIFF", compression="jpeg", quality=90)
    for name, args in [("tiff_rgb_lzw.tif", ["-c", "lzw"]), ("tiff_palette.tif", []),
                       ("tiff_rgba.tif", ["-c", "zip"]), ("tiff_jpeg.tif", [])]:
        out["tiled_" + name[5:]] = tiled(out[name], *args)
    # bilevel in whole tiles: tiffcp's Group 4 encoding of a part tile differs from run to run
    b = io.BytesIO()
    Image.fromarray(field(48, 32, 19)[:, :, 1]).convert("1").save(b, "TIFF", compression="group4")
    out["tiled_bilevel.tif"] = tiled(b.getvalue())
    save("bmp_rgb24.bmp", Image.fromarray(field(39, 30, 18)), "BMP")
    save("bmp_palette8.bmp", pal, "BMP")
    save("bmp_grey.bmp", grey, "BMP")  # a grey-ramp palette: opens as L
    save("bmp_bilevel.bmp", grey.convert("1"), "BMP")
    save("bmp_rgba.bmp", rgba, "BMP")  # written 32-bit: Pillow reads it back as RGB
    bmp_images(out)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    t, manifest = {}, []
    for name, data in images().items():
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data)
        im = Image.open(path)
        im.seek(0)
        w, h = im.size
        t[f"{name}:decode"] = np.asarray(im.convert("RGB")).astype(np.int32)
        sizes = [24, min(w, h)]
        for S in sizes:
            r = resize_short(im, S)
            t[f"{name}:eval_{S}"] = np.asarray(center_crop(r, S).convert("RGB")).astype(np.int32)
        box = (3, 2, w - 7, h - 5)
        t[f"{name}:crop"] = np.asarray(resized_crop(im, *box, 20).convert("RGB")).astype(np.int32)
        manifest.append(f"{name} {im.mode} {sizes[0]} {sizes[1]} {box[0]} {box[1]} {box[2]} {box[3]} 20")
    vlpt.write(os.path.join(OUT, "modes.vlpt"), t)
    with open(os.path.join(OUT, "MANIFEST"), "w") as f:
        f.write(f"# file pil_mode S1 S2 crop_x crop_y crop_w crop_h crop_S  (Pillow {PIL.__version__}, "
                f"torchvision {'yes' if TF else 'no: PIL calls'})\n")
        f.write("\n".join(manifest) + "\n")
    print(f"wrote {len(manifest)} images and {len(t)} tensors to {OUT}")


if __name__ == "__main__":
    main()
