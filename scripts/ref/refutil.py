"""Helpers for scripts/ref_*.py: write reference tensors as raw little-endian
arrays that tests/helpers/testutil.c reads (name.f32 / name.f64 / name.i64)."""
import os
import sys

import numpy as np


def out_dir():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTDIR")
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    return d


def save(d, name, t):
    """Save a torch tensor or numpy array; the dtype picks the extension."""
    try:
        import torch
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous().numpy()
    except ImportError:
        pass
    a = np.ascontiguousarray(t)
    if a.dtype == np.float32:
        ext = "f32"
    elif a.dtype == np.float64:
        ext = "f64"
    elif a.dtype in (np.int64, np.int32, np.uint8, np.int16):
        a = a.astype("<i8")
        ext = "i64"
    else:
        raise TypeError(f"{name}: unsupported dtype {a.dtype}")
    a.astype(a.dtype.newbyteorder("<")).tofile(os.path.join(d, f"{name}.{ext}"))
