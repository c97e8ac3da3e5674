"""Fixtures for tests/image/test_image_resize.c: Pillow's bilinear resize with box= on
random-noise RGB images over many geometries (down- and upscales, fractional
boxes, extreme aspect ratios, sizes that are not multiples of any vector width).

Noise is the hardest input for exactness (every rounding shows), so the C test
demands identical bytes. Writes to build/fixtures/image_resize/:
  cases.txt                one line per case: k W H x0 y0 x1 y1 ow oh
  in_<k>.u8, out_<k>.u8    the source (H x W x 3) and PIL's output (oh x ow x 3)
"""
import os
import sys

import numpy as np
from PIL import Image


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(2024)
    lines = []
    fixed = [  # W, H, box or None, ow, oh
        (500, 375, None, 224, 224),
        (375, 500, (13.0, 40.0, 300.0, 411.0), 224, 224),
        (341, 256, None, 341, 256),  # identity
        (7, 5, None, 224, 3),        # strong upscale, tiny source
        (640, 3, None, 5, 1),        # 128x downscale on x
        (1, 1, None, 17, 9),
        (300, 200, (0.5, 0.25, 299.5, 199.75), 150, 100),
        (224, 224, (3.0, 0.0, 224.0, 224.0), 221, 224),  # x: a pure 1:1 shift
    ]
    cases = list(fixed)
    for _ in range(56):
        W, H = int(rng.integers(1, 320)), int(rng.integers(1, 320))
        if rng.random() < 0.3:
            box = None
        else:
            x0, x1 = sorted(rng.uniform(0, W, 2))
            y0, y1 = sorted(rng.uniform(0, H, 2))
            if rng.random() < 0.5:
                x0, y0, x1, y1 = float(int(x0)), float(int(y0)), float(int(x1) + 1), float(int(y1) + 1)
            if x1 - x0 < 0.1:  # PIL refuses empty boxes
                x1 = min(float(W), x0 + 0.1)
                x0 = x1 - 0.1
            if y1 - y0 < 0.1:
                y1 = min(float(H), y0 + 0.1)
                y0 = y1 - 0.1
            # Pillow keeps the box in C floats: use float32 values so that the
            # C test sees the same numbers
            box = tuple(float(np.float32(v)) for v in (x0, y0, x1, y1))
        ow, oh = int(rng.integers(1, 260)), int(rng.integers(1, 260))
        cases.append((W, H, box, ow, oh))
    for k, (W, H, box, ow, oh) in enumerate(cases):
        a = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        if k % 3 == 0:  # saturated regions: rounding at 0 and 255
            a[:, : W // 2] = np.where(a[:, : W // 2] > 127, 255, 0)
        im = Image.fromarray(a, "RGB")
        b = box if box is not None else (0.0, 0.0, float(W), float(H))
        out = np.asarray(im.resize((ow, oh), Image.BILINEAR, box=b))
        a.tofile(os.path.join(d, f"in_{k}.u8"))
        out.astype(np.uint8).tofile(os.path.join(d, f"out_{k}.u8"))
        lines.append(f"{k} {W} {H} {b[0]!r} {b[1]!r} {b[2]!r} {b[3]!r} {ow} {oh}")
    open(os.path.join(d, "cases.txt"), "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
