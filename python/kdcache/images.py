"""The dataset side of a cache: listing an ImageFolder as kd-train does
(common/image/dataset.c), and reading one image with the checks kd-train
applies (formats/cache_match.c): the file's size and CRC-32, then its decoded
size, against the cache's row."""

import io
import os
import zlib

import numpy as np
from PIL import Image

from .errors import CacheError


def _is_jpeg(name):
    n = name.lower()
    return n.endswith(".jpg") or n.endswith(".jpeg")


def list_image_folder(root):
    """[(relative path, label)] in kd-train's order: class folders sorted
    byte-wise, files as torchvision's sorted(os.walk(class_dir))."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise CacheError(f"{root}: no such folder")
    classes = sorted((e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e))),
                     key=lambda s: s.encode("utf-8", "surrogateescape"))
    out = []
    for label, cls in enumerate(classes):
        base = os.path.join(root, cls)
        found = []
        for dirpath, _dirs, files in sorted(os.walk(base, followlinks=True)):
            for fn in sorted(files):
                if _is_jpeg(fn):
                    found.append((os.path.relpath(os.path.join(dirpath, fn), root), label))
        out.extend(found)
    return out


def match_listing(cache_path, root, paths, labels):
    """kd-train's cache_match_dataset: the folder holds exactly the cache's
    images, each with the cache's label."""
    listing = list_image_folder(root)
    on_disk = {}
    for p, lab in listing:
        if p in on_disk:
            raise CacheError(f"{root} lists '{p}' twice")
        on_disk[p] = lab
    seen = set()
    for r, p in enumerate(paths):
        if p not in on_disk:
            raise CacheError(f"{cache_path} does not match {root}: '{p}' (cache row {r}) is "
                             f"not in the dataset")
        if p in seen:
            raise CacheError(f"{cache_path} does not match {root}: '{p}' appears twice in the "
                             f"cache's image table")
        seen.add(p)
        if int(labels[r]) != -1 and on_disk[p] != int(labels[r]):
            raise CacheError(f"{cache_path} does not match {root}: '{p}' has label "
                             f"{int(labels[r])} in the cache, {on_disk[p]} on disk")
    for p, _ in listing:
        if p not in seen:
            raise CacheError(f"{cache_path} does not match {root}: '{p}' is in the dataset but "
                             f"not in the cache ({len(listing)} images on disk, {len(paths)} "
                             f"in the cache)")


def load_checked(cache_path, root, path, size, crc32, width=None, height=None):
    """The RGB PIL image of root/path after checking its bytes (and, when
    given, its decoded size) against the cache's row."""
    full = os.path.join(os.fspath(root), path)
    try:
        with open(full, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise CacheError(f"{full}: cannot read ({e.strerror}) (the cache {cache_path} has "
                         f"outputs for it)") from None
    if len(data) != int(size):
        raise CacheError(f"{full}: {len(data)} bytes, but the cache {cache_path} was made from "
                         f"a file of {int(size)}")
    crc = zlib.crc32(data) & 0xFFFFFFFF
    if crc != int(crc32):
        raise CacheError(f"{full}: contents differ from the file the cache {cache_path} was "
                         f"made from (crc32 {crc:08x}, expected {int(crc32):08x})")
    try:
        img = Image.open(io.BytesIO(data))
        img = img.convert("RGB")
    except Exception as e:  # PIL raises many kinds on a bad JPEG
        raise CacheError(f"{full}: cannot decode ({e}) (the cache {cache_path} has outputs "
                         f"for it)") from None
    if width is not None and img.size != (int(width), int(height)):
        raise CacheError(f"{full}: decodes to {img.size[0]}x{img.size[1]} pixels, the cache "
                         f"{cache_path} says {int(width)}x{int(height)}")
    return img


def rgb_array(img):
    return np.asarray(img, dtype=np.uint8)
