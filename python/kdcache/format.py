"""Reading a kdcache teacher cache (docs/CACHE_FORMAT.md, versions 1 and 2).

`open(path)` validates the file the way formats/cache_reader.c does, before
anything sized by the file is read: attribute types and ranges, dataset
types, shapes and chunking, image paths, labels, progress marks and the dataset
fingerprint. Every problem is one CacheError line. In a version 2 file no
variable-length type is accepted, and the check happens on the type alone,
before any value is read, so libhdf5's global heap (which crashes on damaged
bytes) is never touched.
"""

import hashlib
import os
import struct

import numpy as np

import hdf5plugin  # noqa: F401  (registers the LZ4 filter, id 32004)
import h5py

from .errors import CacheError

SUPPORTED_VERSIONS = (1, 2)

MAX_IMAGES = 1 << 31
MAX_VIEWS = 4096
MAX_CLASSES = 1 << 24
MAX_FEATURES = 1 << 20
MAX_PATH = 4096
MAX_CHUNK_BYTES = 1 << 30
STR_MAX = 256
TOPK_U16_MAX_CLASSES = 65536

INT_ATTRS = ("kdcache_version", "num_images", "views_per_image", "num_classes", "feature_dim",
             "image_size", "resize_size", "pad", "seed", "chunk_images", "shard_index",
             "shard_count", "complete")
STR_ATTRS = ("teacher_arch", "teacher_weights_sha256", "view_policy", "logit_storage",
             "dataset_fingerprint", "created_by")
FLOAT_ATTRS = {"mean": 3, "std": 3, "scale_range": 2, "ratio_range": 2}

PER_CHUNK = ("images/height", "images/width", "images/skipped", "views/box", "views/flip",
             "logits", "topk/index", "topk/value", "features")
PER_VIEW = ("logits", "topk/index", "topk/value", "features")


def _is_vlen(dtype):
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.length is None:
        return True
    return h5py.check_vlen_dtype(dtype) is not None


def _attr_dtype(f, name):
    try:
        return f.attrs.get_id(name).dtype
    except (KeyError, OSError):
        raise CacheError(f"root attribute {name} is missing") from None


def _read_attr(f, name, version):
    dt = _attr_dtype(f, name)
    if version >= 2 and _is_vlen(dt):
        raise CacheError(f"attribute {name} has a variable-length type (not allowed in v2)")
    try:
        return f.attrs[name]
    except OSError as e:
        raise CacheError(f"attribute {name} cannot be read ({e})") from None


def _int_attr(f, name, version, optional=False):
    if optional and name not in f.attrs:
        return None
    dt = _attr_dtype(f, name)
    v = _read_attr(f, name, version)
    a = np.asarray(v)
    if dt.kind not in "iu" or a.size != 1:
        raise CacheError(f"attribute {name} has the wrong type or {a.size} elements (want 1)")
    return int(a.reshape(-1)[0])


def _str_attr(f, name, version):
    dt = _attr_dtype(f, name)
    if dt.kind not in "SUO" or h5py.check_string_dtype(dt) is None:
        raise CacheError(f"attribute {name} has the wrong type or 1 elements (want a string)")
    v = _read_attr(f, name, version)
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise CacheError(f"attribute {name} has the wrong type or {v.size} elements (want 1)")
        v = v.reshape(-1)[0]
    if isinstance(v, (bytes, np.bytes_)):
        v = bytes(v)
        if len(v) >= STR_MAX:
            raise CacheError(f"attribute {name} longer than {STR_MAX - 1} bytes")
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            raise CacheError(f"attribute {name} is not UTF-8") from None
    if not isinstance(v, str):
        raise CacheError(f"attribute {name} has the wrong type (want a string)")
    if len(v.encode("utf-8")) >= STR_MAX:
        raise CacheError(f"attribute {name} longer than {STR_MAX - 1} bytes")
    return v.rstrip("\0")


def _float_attr(f, name, n, version):
    dt = _attr_dtype(f, name)
    a = np.asarray(_read_attr(f, name, version))
    if dt.kind not in "fiu" or a.size != n:
        raise CacheError(f"attribute {name} has the wrong type or {a.size} elements (want {n})")
    return [float(x) for x in a.reshape(-1)]


def read_header(f):
    """The root attributes as a dict of Python values, checked as
    cache_header_validate() checks them."""
    version = _int_attr(f, "kdcache_version", 1)
    if version not in SUPPORTED_VERSIONS:
        raise CacheError(f"kdcache_version {version} is not supported (this build reads 1 and 2)")
    h = {"kdcache_version": version}
    for name in INT_ATTRS[1:]:
        h[name] = _int_attr(f, name, version)
    for name in STR_ATTRS:
        h[name] = _str_attr(f, name, version)
    for name, n in FLOAT_ATTRS.items():
        h[name] = _float_attr(f, name, n, version)
    # As the C reader: topk is read (and required) only in topk mode.
    h["topk"] = _int_attr(f, "topk", version) if h["logit_storage"] == "topk" else 0
    validate_header(h)
    return h


def validate_header(h):
    N, V, C, D = h["num_images"], h["views_per_image"], h["num_classes"], h["feature_dim"]
    if not 1 <= N <= MAX_IMAGES:
        raise CacheError(f"num_images {N} out of range [1, {MAX_IMAGES}]")
    if not 1 <= V <= MAX_VIEWS:
        raise CacheError(f"views_per_image {V} out of range [1, {MAX_VIEWS}]")
    if not 1 <= C <= MAX_CLASSES:
        raise CacheError(f"num_classes {C} out of range [1, {MAX_CLASSES}]")
    if not 0 <= D <= MAX_FEATURES:
        raise CacheError(f"feature_dim {D} out of range [0, {MAX_FEATURES}]")
    if h["view_policy"] not in ("center", "rrc", "pad-crop"):
        raise CacheError(f"view_policy '{h['view_policy']}': expected center, rrc or pad-crop")
    if not (1 <= h["image_size"] <= 65536 and 0 <= h["resize_size"] <= 65536
            and 0 <= h["pad"] <= 65536):
        raise CacheError("image_size/resize_size/pad out of range")
    for m, s in zip(h["mean"], h["std"]):
        if not (np.isfinite(m) and np.isfinite(s) and s > 0):
            raise CacheError("mean/std must be finite with std > 0")
    if not all(np.isfinite(x) for x in h["scale_range"] + h["ratio_range"]):
        raise CacheError("scale_range/ratio_range must be finite")
    mode, K = h["logit_storage"], h["topk"]
    if mode in ("float32", "float16"):
        if K != 0:
            raise CacheError(f"topk is {K} but logit_storage is {mode}")
    elif mode == "topk":
        if not 1 <= K <= C:
            raise CacheError(f"topk {K} out of range [1, num_classes={C}]")
    else:
        raise CacheError(f"logit storage '{mode}': expected float32, float16 or topk:K")
    ch = h["chunk_images"]
    if not 1 <= ch <= N:
        raise CacheError(f"chunk_images {ch} out of range [1, num_images={N}]")
    if ch * max_row_bytes(h) > MAX_CHUNK_BYTES:
        raise CacheError(f"a chunk of {ch} images exceeds {MAX_CHUNK_BYTES} bytes")
    nc = (N + ch - 1) // ch
    if not (1 <= h["shard_count"] <= nc and 0 <= h["shard_index"] < h["shard_count"]):
        raise CacheError(f"shard {h['shard_index']}/{h['shard_count']} invalid for {nc} chunks")
    if h["complete"] not in (0, 1):
        raise CacheError("complete must be 0 or 1")


def topk_index_dtype(h):
    return np.uint16 if h["num_classes"] <= TOPK_U16_MAX_CLASSES else np.int32


def max_row_bytes(h):
    """Bytes per image of the largest per-view dataset, as cache_schema.c
    sizes it (v1: all V views; a v2 HDF5 chunk holds one view, but the
    limit is on the whole chunk of images)."""
    V, C, D, K = h["views_per_image"], h["num_classes"], h["feature_dim"], h["topk"]
    if h["logit_storage"] == "topk":
        logits = V * K * (4 if C > TOPK_U16_MAX_CLASSES else 2)
    else:
        logits = V * C * (4 if h["logit_storage"] == "float32" else 2)
    return max(logits, V * D * 2, V * 16)


def num_chunks(h):
    return (h["num_images"] + h["chunk_images"] - 1) // h["chunk_images"]


def shard_chunks(h):
    nc, i, n = num_chunks(h), h["shard_index"], h["shard_count"]
    return i * nc // n, (i + 1) * nc // n


def check_path(p):
    b = p.encode("utf-8")
    if not b:
        raise CacheError("empty image path")
    if len(b) > MAX_PATH:
        raise CacheError(f"image path longer than {MAX_PATH} bytes")
    if p.startswith("/"):
        raise CacheError(f"image path '{p}' is absolute")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in p):
        raise CacheError(f"image path '{p[:200]}' has a control character or backslash")
    if ".." in p.split("/"):
        raise CacheError(f"image path '{p[:200]}' contains '..'")


def fingerprint(paths, sizes, crcs):
    """SHA-256 over path || NUL || size (u64 LE) || crc32 (u32 LE), as hex."""
    h = hashlib.sha256()
    for p, s, c in zip(paths, sizes, crcs):
        h.update(p.encode("utf-8") + b"\0" + struct.pack("<QI", int(s), int(c)))
    return h.hexdigest()


def dataset_spec(h):
    """{name: (dtype kind, item size, shape, present, per_chunk)} of every dataset."""
    N, V, C, D, K = (h["num_images"], h["views_per_image"], h["num_classes"],
                     h["feature_dim"], h["topk"])
    topk = h["logit_storage"] == "topk"
    lsz = 4 if h["logit_storage"] == "float32" else 2
    v2 = h["kdcache_version"] >= 2
    return {
        "images/path": ("S", 0, (N,), True, False),
        "images/label": ("i", 4, (N,), True, False),
        "images/size": ("u", 8, (N,), True, v2),
        "images/crc32": ("u", 4, (N,), True, v2),
        "images/height": ("i", 4, (N,), True, True),
        "images/width": ("i", 4, (N,), True, True),
        "images/skipped": ("u", 1, (N,), True, True),
        "views/box": ("i", 4, (N, V, 4), True, True),
        "views/flip": ("u", 1, (N, V), True, True),
        "logits": ("f", lsz, (N, V, C), not topk, True),
        "topk/index": ("iu", np.dtype(topk_index_dtype(h)).itemsize, (N, V, K), topk, True),
        "topk/value": ("f", 2, (N, V, K), topk, True),
        "features": ("f", 2, (N, V, D), D > 0, True),
        "progress/done": ("u", 1, (num_chunks(h),), True, False),
    }


def _exists(f, name):
    try:
        return name in f
    except (OSError, ValueError):
        return False


def check_datasets(f, h):
    version = h["kdcache_version"]
    for name, (kind, size, shape, present, per_chunk) in dataset_spec(h).items():
        if not present:
            if _exists(f, name):
                raise CacheError(f"dataset /{name} present but logit_storage is "
                                 f"{h['logit_storage']}")
            continue
        try:
            d = f[name]
        except (KeyError, OSError, ValueError):
            raise CacheError(f"dataset /{name} is missing") from None
        if not isinstance(d, h5py.Dataset):
            raise CacheError(f"dataset /{name} is missing")
        dt = d.dtype
        if name == "images/path":
            info = h5py.check_string_dtype(dt)
            if info is None:
                raise CacheError(f"dataset /{name} has the wrong type (want strings)")
            if version >= 2 and info.length is None:
                raise CacheError(f"dataset /{name} has a variable-length type (not allowed in v2)")
            if info.length is not None and not 1 <= info.length <= MAX_PATH:
                raise CacheError(f"dataset /{name}: strings of {info.length} bytes "
                                 f"(1..{MAX_PATH})")
        else:
            if _is_vlen(dt) or dt.kind not in kind or dt.itemsize != size:
                raise CacheError(f"dataset /{name} has the wrong type or rank ({d.ndim}, want "
                                 f"{len(shape)})")
        if d.ndim != len(shape):
            raise CacheError(f"dataset /{name} has the wrong type or rank ({d.ndim}, want "
                             f"{len(shape)})")
        for i, (got, want) in enumerate(zip(d.shape, shape)):
            if got != want:
                raise CacheError(f"dataset /{name}: dimension {i} is {got}, expected {want}")
        if per_chunk:
            ch = d.chunks
            if ch is None or ch[0] != h["chunk_images"]:
                raise CacheError(f"dataset /{name} is not chunked by {h['chunk_images']} images")
            if version >= 2 and name in PER_VIEW and ch[1] != 1:
                raise CacheError(f"dataset /{name} is not chunked one view at a time")


class Cache:
    """An open, validated cache file: `header` (dict of the root attributes),
    the image table as numpy arrays (`paths` list of str, `label`, `size`,
    `crc32`, `height`, `width`, `skipped`), `done` (per chunk), `box`
    (N x V x 4 int32) and `flip` (N x V uint8), and `read()` for the teacher
    outputs. `file` is the underlying h5py.File (read-only)."""

    def __init__(self, path, f, h, tables):
        self.path = path
        self.file = f
        self.header = h
        for k, v in tables.items():
            setattr(self, k, v)

    # Shortcuts for the most used attributes.
    version = property(lambda s: s.header["kdcache_version"])
    num_images = property(lambda s: s.header["num_images"])
    views_per_image = property(lambda s: s.header["views_per_image"])
    num_classes = property(lambda s: s.header["num_classes"])
    feature_dim = property(lambda s: s.header["feature_dim"])
    chunk_images = property(lambda s: s.header["chunk_images"])
    logit_storage = property(lambda s: s.header["logit_storage"])
    num_chunks = property(lambda s: num_chunks(s.header))

    def chunk_images_of(self, c):
        first = c * self.chunk_images
        return first, min(self.num_images, first + self.chunk_images) - first

    def chunk_of(self, row):
        return row // self.chunk_images

    def read(self, name, rows=slice(None), view=None):
        """Rows of a dataset as numpy (e.g. read("logits", slice(0, 64), view=2)).
        A corrupt chunk (fletcher32, LZ4) is a CacheError naming the chunk."""
        return read_rows(self, name, rows, view)

    def teacher(self, row, view):
        """The teacher outputs of one (image, view) as float32 numpy arrays:
        {"logits"} or {"topk_index", "topk_value"}, plus {"features"}."""
        out = {}
        if self.logit_storage == "topk":
            idx = self.read("topk/index", row, view).astype(np.int64)
            bad = (idx < 0) | (idx >= self.num_classes)
            if bad.any():
                raise CacheError(f"{self.path}: top-k index {int(idx[bad].reshape(-1)[0])} "
                                 f"outside [0, {self.num_classes})")
            out["topk_index"] = idx
            out["topk_value"] = self.read("topk/value", row, view).astype(np.float32)
        else:
            out["logits"] = self.read("logits", row, view).astype(np.float32)
        if self.feature_dim > 0:
            out["features"] = self.read("features", row, view).astype(np.float32)
        return out

    def verify(self):
        """Reads every chunk that is done of every per-chunk dataset, as
        `kd-cache verify` does: a corrupt chunk (fletcher32, LZ4) is a
        CacheError naming the dataset, the chunk and its images."""
        names = [n for n, s in dataset_spec(self.header).items() if s[3] and s[4]]
        for c in range(self.num_chunks):
            if not self.done[c]:
                continue
            first, count = self.chunk_images_of(c)
            for name in names:
                self.read(name, slice(first, first + count))

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _corrupt(cache, name, rows):
    ch = cache.chunk_images
    if isinstance(rows, slice):
        start = rows.start or 0
        stop = cache.num_images if rows.stop is None else rows.stop
    else:
        start = stop = int(rows)
        stop += 1
    c0, c1 = start // ch, max(start, stop - 1) // ch
    chunks = f"chunk {c0}" if c0 == c1 else f"chunks {c0}-{c1}"
    return CacheError(f"{cache.path}: checksum mismatch in /{name} {chunks} "
                      f"(images {start}-{stop - 1}): the file is corrupt")


def read_rows(cache, name, rows=slice(None), view=None):
    d = cache.file[name]
    try:
        if view is None:
            return d[rows]
        return d[rows, view]
    except OSError:
        # h5py raises OSError ("Can't read data") on a fletcher32 or LZ4 failure.
        raise _corrupt(cache, name, rows) from None


def _read_table(f, name, path, n_rows=None):
    try:
        return f[name][()] if n_rows is None else f[name][:n_rows]
    except OSError:
        raise CacheError(f"{path}: checksum mismatch in /{name}: the file is corrupt") from None


def open(path, allow_incomplete=False):  # noqa: A001  (kdcache.open, as the issue names it)
    """Opens and validates a cache; returns a Cache. allow_incomplete also
    opens a file with complete = 0 (a plan from `kd-precompute --plan-only`,
    a .partial file, a shard)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CacheError(f"{path}: cannot open (no such file)")
    try:
        if not h5py.is_hdf5(path):
            raise CacheError(f"{path}: not an HDF5 file (or truncated)")
        f = h5py.File(path, "r")
    except CacheError:
        raise
    except OSError:
        raise CacheError(f"{path}: cannot open as HDF5 (truncated or corrupt?)") from None
    try:
        return _open(path, f, allow_incomplete)
    except CacheError as e:
        f.close()
        msg = str(e)
        raise CacheError(msg if msg.startswith(path + ":") else f"{path}: {msg}") from None
    except (OSError, KeyError, ValueError, TypeError) as e:
        f.close()
        raise CacheError(f"{path}: unreadable HDF5 structure ({e})") from None


def _open(path, f, allow_incomplete):
    h = read_header(f)
    N = h["num_images"]
    if N > os.path.getsize(path) // 16:
        raise CacheError(f"num_images {N} is impossible in a {os.path.getsize(path)}-byte file")
    if not allow_incomplete:
        if h["shard_count"] != 1:
            raise CacheError(f"is shard {h['shard_index']} of {h['shard_count']}: join the shards "
                             f"with kd-cache merge")
        if not h["complete"]:
            raise CacheError("is incomplete (complete = 0): resume the writer")
    check_datasets(f, h)
    t = {}
    raw = _read_table(f, "images/path", path)
    paths = []
    for i, p in enumerate(raw):
        if isinstance(p, (bytes, np.bytes_)):
            p = bytes(p).rstrip(b"\0")
            try:
                p = p.decode("utf-8")
            except UnicodeDecodeError:
                raise CacheError(f"image {i}: path is not UTF-8") from None
        try:
            check_path(p)
        except CacheError as e:
            raise CacheError(f"image {i}: {e}") from None
        paths.append(p)
    t["paths"] = paths
    t["label"] = _read_table(f, "images/label", path).astype(np.int32)
    t["done"] = _read_table(f, "progress/done", path).astype(np.uint8)
    V = h["views_per_image"]
    nc, ch = num_chunks(h), h["chunk_images"]
    names = ["images/height", "images/width", "images/skipped", "views/box", "views/flip"]
    if h["kdcache_version"] >= 2:
        names = ["images/size", "images/crc32"] + names
    else:
        t["size"] = _read_table(f, "images/size", path).astype(np.uint64)
        t["crc32"] = _read_table(f, "images/crc32", path).astype(np.uint32)
    shapes = {"views/box": (N, V, 4), "views/flip": (N, V)}
    dtypes = {"images/size": np.uint64, "images/crc32": np.uint32, "images/height": np.int32,
              "images/width": np.int32, "images/skipped": np.uint8, "views/box": np.int32,
              "views/flip": np.uint8}
    # Rows of chunks that are done; and, in a plan (teacher_arch "external",
    # docs/CACHE_FORMAT.md), the image and view rows of every chunk.
    plan = h["teacher_arch"] == "external" and not h["complete"]
    for name in names:
        a = np.zeros(shapes.get(name, (N,)), dtype=dtypes[name])
        d = f[name]
        for c in range(nc):
            if t["done"][c] or plan:
                s = slice(c * ch, min(N, (c + 1) * ch))
                try:
                    a[s] = d[s]
                except OSError:
                    raise CacheError(f"checksum mismatch in /{name} chunk {c} "
                                     f"(images {s.start}-{s.stop - 1}): the file is "
                                     f"corrupt") from None
        key = name.split("/")[1]
        t[key] = a
    for i in np.nonzero((t["label"] < -1) | (t["label"] >= h["num_classes"]))[0][:1]:
        raise CacheError(f"image {i}: label {t['label'][i]} outside [-1, {h['num_classes']})")
    bad = (t["height"] < 0) | (t["width"] < 0) | (t["skipped"] > 1)
    for i in np.nonzero(bad)[0][:1]:
        raise CacheError(f"image {i}: negative size or bad skipped flag")
    fp = h["dataset_fingerprint"]
    if h["kdcache_version"] >= 2 and not fp and h["complete"] and h["shard_count"] == 1:
        raise CacheError("dataset_fingerprint is empty in a complete file")
    if h["kdcache_version"] < 2 or (h["complete"] and h["shard_count"] == 1):
        got = fingerprint(paths, t["size"], t["crc32"])
        if got != fp:
            raise CacheError(f"dataset_fingerprint does not match the image table (file "
                             f"{fp[:16]}..., table {got[:16]}...)")
    elif fp and not (len(fp) == 64 and all(ch in "0123456789abcdef" for ch in fp)):
        raise CacheError("dataset_fingerprint is neither empty nor 64 hex digits")
    if h["complete"]:
        a, b = shard_chunks(h)
        for c in range(a, b):
            if not t["done"][c]:
                raise CacheError(f"marked complete but chunk {c} is not done")
    ok = t["skipped"] == 0
    for c in range(nc):
        if not (t["done"][c] or plan):
            ok[c * ch:(c + 1) * ch] = False
    box, flip = t["box"], t["flip"]
    bad = ok[:, None] & ((box[:, :, 2] < 1) | (box[:, :, 3] < 1) | (flip > 1))
    if bad.any():
        i, v = map(int, np.argwhere(bad)[0])
        raise CacheError(f"image {i} view {v}: bad box or flip")
    return Cache(path, f, h, t)
