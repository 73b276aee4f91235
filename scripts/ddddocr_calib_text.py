#!/usr/bin/env python3
"""More calibration rows for the ddddocr text detector: photos that are not test photos, with
words drawn on them (issue 13, measured in BENCHMARKS.md "ddddocr: the whole stride-8 head,
all calibration photos, photos with words").

The detector finds single characters. Its calibration rows (`calib.npy`) are five photos
without drawn words, while the test rows (`test_text.npy`) carry eight random words each. This
script draws words on the five training photos of `calib.npy` (astronaut, camera, coffee,
rocket, text) and on three photos no test row uses (cell, clock_motion, retina), with the
method the shared data's README describes for the test rows but other seeds, and preprocesses
them as ddddocr 1.6.1 does. The test photos (chelsea, gravel, grass, brick) are never read.

For each photo, VARIANTS rows (default 2): variant 0 is the whole photo, variant k > 0 a
random crop (35-80 % of the area, aspect jittered), flipped left-right, as `calib.npy`'s v01
rows; words are drawn after the crop and flip, so they read the right way. Every row is
letterboxed into 416 x 416 (r = min(416/h, 416/w), Pillow BILINEAR, top-left on a canvas of
114), BGR, CHW, float32 0..255. OUT/calib_text.npy holds the rows, OUT/calib_text.json what
was drawn where. Needs numpy and Pillow >= 10.1 (scalable default font).

    python3 scripts/ddddocr_calib_text.py ../shared/data out/ddddocr_calib [VARIANTS]
"""
import json
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIDE, PAD = 416, 114
PHOTOS = ["astronaut", "camera", "coffee", "rocket", "text", "cell", "clock_motion", "retina"]
TEST_PHOTOS = {"chelsea", "gravel", "grass", "brick"}
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
SEED = 20261207  # not the test rows' seed (7)


def crop_flip(img, rng):
    """A random crop of 35-80 % of the area, aspect jittered by exp(±0.35), flipped left-right."""
    w, h = img.size
    a = rng.uniform(0.35, 0.8)
    e = rng.uniform(-0.35, 0.35)
    aspect = (w / h) * np.exp(e)
    cw = int(min(w, max(16, round(np.sqrt(a * w * h * aspect)))))
    ch = int(min(h, max(16, round(np.sqrt(a * w * h / aspect)))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    box = (x0, y0, x0 + cw, y0 + ch)
    return img.crop(box).transpose(Image.Transpose.FLIP_LEFT_RIGHT), list(box)


def draw_words(img, rng, count=8):
    """Draws `count` random words (1-4 characters) with a stroke in the inverse colour."""
    draw = ImageDraw.Draw(img)
    w, h = img.size
    words = []
    for _ in range(count):
        size = int(rng.integers(max(14, h // 14), max(20, h // 6)))
        font = ImageFont.load_default(size)
        word = "".join(ALPHABET[int(i)] for i in rng.integers(0, len(ALPHABET), rng.integers(1, 5)))
        x = int(rng.integers(0, max(1, w - size * len(word))))
        y = int(rng.integers(0, max(1, h - size)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        stroke = int(rng.integers(0, 3))
        inverse = tuple(255 - c for c in colour)
        draw.text((x, y), word, font=font, fill=colour, stroke_width=stroke, stroke_fill=inverse)
        words.append({"word": word, "xy": [x, y], "size": size})
    return words


def letterbox(img):
    """ddddocr's preprocessing: letterbox into 416 x 416, BGR, CHW, float32 0..255."""
    w, h = img.size
    r = min(SIDE / h, SIDE / w)
    resized = np.asarray(img.resize((int(w * r), int(h * r)), Image.Resampling.BILINEAR))
    canvas = np.full((SIDE, SIDE, 3), PAD, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32), r


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    variants = int(sys.argv[3]) if len(sys.argv) == 4 else 2
    if variants < 1:
        sys.exit(f"VARIANTS must be at least 1, got {variants}")
    assert not TEST_PHOTOS & set(PHOTOS)
    out.mkdir(parents=True, exist_ok=True)
    rows, log = [], []
    for name in PHOTOS:
        photo = Image.open(data / "images" / f"{name}.png").convert("RGB")
        for k in range(variants):
            rng = np.random.default_rng([SEED, zlib.crc32(name.encode()), k])
            img, box = (photo.copy(), None) if k == 0 else crop_flip(photo, rng)
            words = draw_words(img, rng)
            row, r = letterbox(img)
            rows.append(row)
            log.append({"row": len(rows) - 1, "photo": name, "variant": k, "crop": box,
                        "ratio": r, "words": words})
    x = np.stack(rows)
    np.save(out / "calib_text.npy", x)
    (out / "calib_text.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"{out / 'calib_text.npy'}: {list(x.shape)} float32 ({len(PHOTOS)} photos x {variants})")


if __name__ == "__main__":
    main()
