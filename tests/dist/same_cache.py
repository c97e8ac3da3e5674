"""same_cache.py A B: exit 0 when two kdcache files hold the same content.

Read with h5py, not with kdcache's reader, so that the check does not share
the code it checks: the same groups and datasets, every dataset's shape, dtype
and values equal (floats bit for bit, NaN included), and every attribute equal
on the root and on every object. Prints the first difference and exits 1.

Used by tests/dist/test_dist_precompute.c: `mpirun -np R kd-precompute`
against one process. Nothing is allowed to differ; the provenance
(created_by) is the same string because it names no rank or host.
"""
import sys

import h5py
import numpy as np


def objects(f):
    out = {"/": f}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    return out


def same_value(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.dtype.kind == "f":  # bits: -0.0 vs 0.0 or another NaN is a difference
        return x.tobytes() == y.tobytes()
    return np.array_equal(x, y)


def main(a_path, b_path):
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        oa, ob = objects(a), objects(b)
        if set(oa) != set(ob):
            print("objects differ:", sorted(set(oa) ^ set(ob)))
            return 1
        for name in sorted(oa):
            x, y = oa[name], ob[name]
            if isinstance(x, h5py.Dataset) != isinstance(y, h5py.Dataset):
                print(name, ": a dataset in one file only")
                return 1
            if isinstance(x, h5py.Dataset) and not same_value(x[()], y[()]):
                print(name, ": values differ", x.shape, y.shape, x.dtype, y.dtype)
                return 1
            if set(x.attrs) != set(y.attrs):
                print(name, ": attributes differ:", sorted(set(x.attrs) ^ set(y.attrs)))
                return 1
            for k in x.attrs:
                if not same_value(x.attrs[k], y.attrs[k]):
                    print(name, ": attribute", k, ":", x.attrs[k], "vs", y.attrs[k])
                    return 1
        n = sum(isinstance(o, h5py.Dataset) for o in oa.values())
        if n < 5 or "complete" not in a.attrs or int(a.attrs["complete"]) != 1:
            print(a_path, ": not a complete cache (", n, "datasets)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
