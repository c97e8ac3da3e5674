"""Reference files for tests/formats/test_cache.c and tests/formats/test_lz4.c, written with
h5py + hdf5plugin (the standard LZ4 plugin), numpy and PyTorch, independently
of our C code.

  ref_cache.py OUTDIR              writes the fixtures below
  ref_cache.py --read FILE OUTDIR  reads a cache that our C writer made, with
                                   h5py + hdf5plugin, and dumps its arrays as
                                   raw fixtures for the C test to compare

Fixtures (OUTDIR):
  lz4_h5py.h5            datasets a (float32, shuffle+LZ4+fletcher32), b (int32,
                         LZ4 with 1 KiB blocks: multi-block chunks), r (random
                         uint8: incompressible blocks), z (zeros)
  lz4_a.f32 lz4_b.i64 lz4_r.i64 lz4_z.i64   their values
  full_h5py.h5           a complete v1 cache written by h5py (float16 logits)
  full_logits.f32 full_features.f32 full_box.i64
  topk_logits.f32        rows of logits with exact ties
  topk_index.i64 topk_value.f32   K largest, float64 sort, ties to lower index,
                         values rounded by torch .half()
"""
import hashlib
import os
import struct
import sys

import h5py
import hdf5plugin
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refutil  # noqa: E402

TOPK_ROWS, TOPK_C, TOPK_K = 64, 1000, 20


def fingerprint(paths, sizes, crcs):
    h = hashlib.sha256()
    for p, s, c in zip(paths, sizes, crcs):
        h.update(p.encode() + b"\0" + struct.pack("<QI", int(s), int(c)))
    return h.hexdigest()


def lz4_file(d):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1000, 37)).astype(np.float32)
    b = (np.arange(20000, dtype=np.int32) % 97) * 3
    r = rng.integers(0, 256, size=50000, dtype=np.uint8)
    z = np.zeros(30000, dtype=np.uint8)
    with h5py.File(os.path.join(d, "lz4_h5py.h5"), "w") as f:
        f.create_dataset("a", data=a, chunks=(100, 37), shuffle=True, fletcher32=True,
                         **hdf5plugin.LZ4())
        f.create_dataset("b", data=b, chunks=(5000,), **hdf5plugin.LZ4(nbytes=1024))
        f.create_dataset("r", data=r, chunks=(50000,), **hdf5plugin.LZ4(nbytes=4096))
        f.create_dataset("z", data=z, chunks=(30000,), **hdf5plugin.LZ4())
    refutil.save(d, "lz4_a", a)
    refutil.save(d, "lz4_b", b)
    refutil.save(d, "lz4_r", r)
    refutil.save(d, "lz4_z", z)


def full_file(d):
    """A complete cache as the format document describes it, by another writer."""
    N, V, C, D, CH = 10, 2, 5, 3, 4
    rng = np.random.default_rng(5)
    paths = [f"class{i % 3}/img{i}.jpg" for i in range(N)]
    sizes = rng.integers(100, 10000, size=N).astype(np.uint64)
    crcs = rng.integers(0, 2**32, size=N).astype(np.uint32)
    logits = rng.standard_normal((N, V, C)).astype(np.float32)
    feats = np.maximum(rng.standard_normal((N, V, D)), 0).astype(np.float32)
    box = rng.integers(1, 50, size=(N, V, 4)).astype(np.int32)
    filt = dict(shuffle=True, fletcher32=True, **hdf5plugin.LZ4())
    with h5py.File(os.path.join(d, "full_h5py.h5"), "w") as f:
        a = f.attrs
        a["kdcache_version"] = 1
        a["teacher_arch"] = "resnet18"
        a["teacher_weights_sha256"] = "0" * 64
        a["num_images"], a["views_per_image"], a["num_classes"], a["feature_dim"] = N, V, C, D
        a["view_policy"] = "rrc"
        a["image_size"], a["resize_size"] = 32, 36
        a["mean"] = [0.485, 0.456, 0.406]
        a["std"] = [0.229, 0.224, 0.225]
        a["scale_range"] = [0.08, 1.0]
        a["ratio_range"] = [0.75, 4 / 3]
        a["pad"] = 0
        a["seed"] = np.uint64(7)
        a["logit_storage"] = "float16"
        a["dataset_fingerprint"] = fingerprint(paths, sizes, crcs)
        a["created_by"] = "ref_cache.py (h5py)"
        a["chunk_images"] = CH
        a["shard_index"], a["shard_count"] = 0, 1
        a["complete"] = 1
        f.create_dataset("images/path", data=paths, dtype=h5py.string_dtype())
        f.create_dataset("images/label", data=np.arange(N, dtype=np.int32) % C)
        f.create_dataset("images/size", data=sizes)
        f.create_dataset("images/crc32", data=crcs)
        f.create_dataset("images/height", data=np.full(N, 40, np.int32), chunks=(CH,), **filt)
        f.create_dataset("images/width", data=np.full(N, 30, np.int32), chunks=(CH,), **filt)
        f.create_dataset("images/skipped", data=np.zeros(N, np.uint8), chunks=(CH,), **filt)
        f.create_dataset("views/box", data=box, chunks=(CH, V, 4), **filt)
        f.create_dataset("views/flip", data=(box[:, :, 0] % 2).astype(np.uint8), chunks=(CH, V),
                         **filt)
        f.create_dataset("logits", data=logits.astype(np.float16), chunks=(CH, V, C), **filt)
        f.create_dataset("features", data=feats.astype(np.float16), chunks=(CH, V, D), **filt)
        f.create_dataset("progress/done", data=np.ones((N + CH - 1) // CH, np.uint8))
    refutil.save(d, "full_logits", torch.from_numpy(logits).half().float())
    refutil.save(d, "full_features", torch.from_numpy(feats).half().float())
    refutil.save(d, "full_box", box)


def topk_ref(d):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((TOPK_ROWS, TOPK_C)).astype(np.float32)
    # Exact ties, some inside the top K: copies of a row's maximum and of other values.
    for r in range(0, TOPK_ROWS, 2):
        m = int(np.argmax(x[r]))
        x[r, (m + 17) % TOPK_C] = x[r, m]
        x[r, (m + 501) % TOPK_C] = x[r, m]
        x[r, 3] = x[r, 900] = x[r, 2]
    x64 = x.astype(np.float64)
    # Sort by value descending, then index ascending (lexsort: last key is primary).
    idx = np.stack([np.lexsort((np.arange(TOPK_C), -row))[:TOPK_K] for row in x64])
    val = torch.from_numpy(np.take_along_axis(x, idx, 1)).half().float()
    refutil.save(d, "topk_logits", x)
    refutil.save(d, "topk_index", idx.astype(np.int64))
    refutil.save(d, "topk_value", val)


def read_ours(path, d):
    """Dump what h5py + hdf5plugin read from our file."""
    os.makedirs(d, exist_ok=True)
    with h5py.File(path, "r") as f:
        for name in ("logits", "features", "topk/index", "topk/value", "views/box",
                     "views/flip", "images/label", "images/height"):
            if name not in f:
                continue
            a = f[name][...]
            key = name.replace("/", "_")
            if a.dtype.kind == "f":
                refutil.save(d, key, a.astype(np.float32))
            else:
                refutil.save(d, key, a.astype(np.int64))
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["images/path"][...]]
        with open(os.path.join(d, "paths.txt"), "w") as fp:
            fp.write("\n".join(paths) + "\n")
        with open(os.path.join(d, "attrs.txt"), "w") as fp:
            for k in ("teacher_arch", "logit_storage", "num_classes", "complete"):
                v = f.attrs[k]
                fp.write(f"{k}={v.decode() if isinstance(v, bytes) else v}\n")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--read":
        read_ours(sys.argv[2], sys.argv[3])
        return
    d = refutil.out_dir()
    lz4_file(d)
    full_file(d)
    topk_ref(d)


if __name__ == "__main__":
    main()
