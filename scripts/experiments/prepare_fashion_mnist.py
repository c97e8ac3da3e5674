#!/usr/bin/python3
"""Convert Debian's dataset-fashion-mnist (IDX files) to ImageFolder JPEG trees.

    scripts/experiments/prepare_fashion_mnist.py --out data/fmnist [--train-per-class N] [--val-per-class M]

Writes OUT/train/<class>/<index>.jpg and OUT/val/<class>/<index>.jpg (28x28
grayscale JPEGs, quality 95, via Pillow). Class folders are named
"<official label>_<name>" so that ImageFolder's byte-wise sort keeps the official
Fashion-MNIST label order. A subset takes the first N images of each class in
file order, so it is the same on every machine. Idempotent: a finished tree
carries a stamp with its parameters and is not rewritten; the tree is built
under a temporary name and renamed when complete.
"""
import argparse
import gzip
import os
import shutil
import struct
import sys
import time

SRC = "/usr/share/datasets/fashion-mnist"
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def read_idx(path, magic_expected):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        sys.exit(f"prepare_fashion_mnist: {path}: truncated IDX file")
    magic, count = struct.unpack(">II", data[:8])
    if magic != magic_expected:
        sys.exit(f"prepare_fashion_mnist: {path}: bad IDX magic {magic:#x}")
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        need = 16 + count * rows * cols
        if len(data) != need:
            sys.exit(f"prepare_fashion_mnist: {path}: {len(data)} bytes, expected {need}")
        return count, rows, cols, data[16:]
    if len(data) != 8 + count:
        sys.exit(f"prepare_fashion_mnist: {path}: truncated label file")
    return count, 0, 0, data[8:]


class Progress:
    def __init__(self, total, what):
        self.total, self.what, self.t0 = total, what, time.time()
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done):
        now = time.time()
        if done < self.total and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0
        if self.tty:
            width = 30
            fill = int(width * done / max(self.total, 1))
            sys.stderr.write(f"\r{self.what} [{'#' * fill}{'.' * (width - fill)}] "
                             f"{done}/{self.total} {rate:.0f} img/s ETA {eta:.0f}s")
            if done >= self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{self.what}: {done}/{self.total} {rate:.0f} img/s ETA {eta:.0f}s\n")
        sys.stderr.flush()


def write_split(out, split, images, labels, rows, cols, per_class):
    from PIL import Image
    chosen = []
    counts = [0] * len(CLASSES)
    for i, lab in enumerate(labels):
        if per_class is None or counts[lab] < per_class:
            counts[lab] += 1
            chosen.append(i)
    for c, name in enumerate(CLASSES):
        os.makedirs(os.path.join(out, split, f"{c}_{name}"), exist_ok=True)
    prog = Progress(len(chosen), f"fashion-mnist {split}")
    n = rows * cols
    for k, i in enumerate(chosen):
        img = Image.frombytes("L", (cols, rows), images[i * n:(i + 1) * n])
        lab = labels[i]
        img.save(os.path.join(out, split, f"{lab}_{CLASSES[lab]}", f"{i:05d}.jpg"),
                 quality=95)
        prog.update(k + 1)
    return len(chosen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    ap.add_argument("--train-per-class", type=int, default=None,
                    help="first N training images of each class (default: all 6000)")
    ap.add_argument("--val-per-class", type=int, default=None,
                    help="first M test images of each class (default: all 1000)")
    ap.add_argument("--src", default=SRC, help=f"IDX folder (default {SRC})")
    a = ap.parse_args()
    for v in (a.train_per_class, a.val_per_class):
        if v is not None and v <= 0:
            sys.exit("prepare_fashion_mnist: per-class counts must be positive")

    stamp_text = f"train_per_class={a.train_per_class} val_per_class={a.val_per_class}\n"
    stamp = os.path.join(a.out, ".prepared")
    if os.path.exists(stamp) and open(stamp).read() == stamp_text:
        print(f"prepare_fashion_mnist: {a.out} is already prepared ({stamp_text.strip()})")
        return
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if not os.path.exists(os.path.join(a.src, f)):
            sys.exit(f"prepare_fashion_mnist: {a.src}/{f} missing "
                     "(apt-get install dataset-fashion-mnist)")

    tmp = a.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    for split, img_f, lab_f, per in (
            ("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", a.train_per_class),
            ("val", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", a.val_per_class)):
        count, rows, cols, images = read_idx(os.path.join(a.src, img_f), 2051)
        lcount, _, _, labels = read_idx(os.path.join(a.src, lab_f), 2049)
        if count != lcount:
            sys.exit(f"prepare_fashion_mnist: {img_f} has {count} images, {lab_f} {lcount} labels")
        total += write_split(tmp, split, images, list(labels), rows, cols, per)
    with open(os.path.join(tmp, ".prepared"), "w") as f:
        f.write(stamp_text)
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print(f"prepare_fashion_mnist: wrote {total} JPEGs to {a.out} ({stamp_text.strip()})")


if __name__ == "__main__":
    main()
