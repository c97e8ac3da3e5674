"""Hostile cache files: kdcache gives one CacheError line, and says what the C
tools (kd-cache verify) say about the same file, never a crash or an h5py
traceback."""

import shutil

import h5py
import numpy as np
import pytest

import kdcache
from conftest import run_tool


def _attr(name, value):
    def m(p):
        with h5py.File(p, "r+") as f:
            f.attrs.modify(name, value)
    return m


def _del_attr(name):
    def m(p):
        with h5py.File(p, "r+") as f:
            del f.attrs[name]
    return m


def _rows(name, index, value):
    def m(p):
        with h5py.File(p, "r+") as f:
            f[name][index] = value
    return m


def _reshape_features(p):
    with h5py.File(p, "r+") as f:
        del f["features"]
        f.create_dataset("features", shape=(18, 3, 100), dtype=np.float16, chunks=(8, 3, 100))


def _truncate(p):
    b = open(p, "rb").read()
    open(p, "wb").write(b[:len(b) // 2])


def _garbage(p):
    open(p, "wb").write(b"\x89HDF\r\n" + bytes(5000))


# (case, mutation, phrase both the C tools and kdcache say)
CASES = [
    ("version", _attr("kdcache_version", np.int64(7)), "kdcache_version 7 is not supported"),
    ("classes", _attr("num_classes", np.int64(0)), "num_classes 0 out of range [1, 16777216]"),
    ("views", _attr("views_per_image", np.int64(5000)), "views_per_image 5000 out of range"),
    ("chunking", _attr("chunk_images", np.int64(99)), "chunk_images 99 out of range"),
    ("missing", _del_attr("seed"), "root attribute seed is missing"),
    ("storage", _attr("logit_storage", "float8"), "logit storage 'float8'"),
    ("label", _rows("images/label", 2, 9), "image 2: label 9 outside [-1, 3)"),
    ("path", _rows("images/path", 1, "../etc/passwd"), "contains '..'"),
    ("abspath", _rows("images/path", 1, "/etc/passwd"), "is absolute"),
    ("shape", _reshape_features, "dataset /features: dimension 2 is 100, expected 512"),
    # v2: size/crc32 of a chunk not done are unknown, so the fingerprint fails first.
    ("done", _rows("progress/done", 1, 0), "dataset_fingerprint does not match"),
    ("fingerprint", _attr("dataset_fingerprint", "0" * 64),
     "dataset_fingerprint does not match the image table"),
    ("size", _rows("images/size", 0, 12345), "dataset_fingerprint does not match"),
    ("truncated", _truncate, "truncated"),
    ("garbage", _garbage, "not an HDF5 file (or truncated)"),
    ("box", _rows("views/box", (3, 1), [0, 0, 0, 5]), "image 3 view 1"),
]


@pytest.mark.parametrize("case,mutate,phrase", CASES, ids=[c[0] for c in CASES])
def test_same_error_as_c_tools(env, tmp_path, case, mutate, phrase):
    p = str(tmp_path / f"{case}.h5")
    shutil.copyfile(env.ref16, p)
    mutate(p)
    r = run_tool("kd-cache", "verify", p, check=False)
    assert r.returncode == 1, r.stderr
    c_line = r.stderr.strip()
    assert len(c_line.splitlines()) == 1 and phrase in c_line, c_line
    with pytest.raises(kdcache.CacheError) as e:
        kdcache.open(p).verify()
    msg = str(e.value)
    assert "\n" not in msg and phrase in msg and msg.startswith(p + ": "), msg


def test_missing_file(tmp_path):
    with pytest.raises(kdcache.CacheError, match="cannot open \\(no such file\\)"):
        kdcache.open(str(tmp_path / "nope.h5"))


def test_corrupt_chunk(env, tmp_path):
    """A flipped byte inside a stored chunk: h5py's OSError from fletcher32
    becomes a CacheError naming the dataset, the chunk and its images; the C
    reader names the same chunk."""
    p = str(tmp_path / "chunk.h5")
    shutil.copyfile(env.ref16, p)
    with h5py.File(p, "r") as f:
        d = f["logits"].id  # v2: one HDF5 chunk per (chunk of 8 images, view)
        info = next(i for i in map(d.get_chunk_info, range(d.get_num_chunks()))
                    if i.chunk_offset[:2] == (8, 0))
    b = bytearray(open(p, "rb").read())
    b[info.byte_offset + info.size // 2] ^= 0xFF
    open(p, "wb").write(bytes(b))
    r = run_tool("kd-cache", "verify", p, check=False)
    assert r.returncode == 1 and "checksum mismatch in /logits chunk 1 (images 8-15)" in r.stderr, \
        r.stderr
    c = kdcache.open(p)  # the tables are fine: only the logits of chunk 1 are not
    with pytest.raises(kdcache.CacheError,
                       match=r"checksum mismatch in /logits chunk 1 \(images 8-15\): the file "
                             r"is corrupt"):
        c.verify()
    with pytest.raises(kdcache.CacheError, match="/logits chunk 1 .images 9-9"):
        c.teacher(9, 0)
    assert c.teacher(0, 0)["logits"].shape == (3,)
    assert c.teacher(9, 1)["logits"].shape == (3,)  # v2: the other views of chunk 1 are fine
    ds = kdcache.CacheDataset(p, env.data, all_views=True)
    hit = int(np.nonzero(ds.rows == 10)[0][0]) * 3  # row 10, view 0
    with pytest.raises(kdcache.CacheError, match="/logits chunk 1"):
        ds[hit]


def test_v2_refuses_variable_length_strings(env, tmp_path):
    """A version 2 file may not hold a variable-length type anywhere; refused
    from the type alone, before any value is read."""
    p = str(tmp_path / "v2.h5")
    shutil.copyfile(env.ref16, p)
    with h5py.File(p, "r+") as f:
        assert f.attrs["kdcache_version"] == 2
        f.attrs["created_by"] = "a variable-length string"  # h5py's default for str
    with pytest.raises(kdcache.CacheError, match="variable-length type"):
        kdcache.open(p)
