"""Version 1 files (written by the v1 writer: tests/fuzz/seeds_v1/, see
tests/fuzz/make_seeds_v1.c): kdcache reads them with the values the C reader
exports, equal to their `kd-cache upgrade` to v2, and refuses damaged ones
with the C tools' phrase."""

import os
import shutil

import h5py
import numpy as np
import pytest

import kdcache
from conftest import REPO, run_tool
from test_roundtrip import ARRAYS, assert_same_as_export

SEEDS = os.path.join(REPO, "tests", "fuzz", "seeds_v1")
FILES = ["v1_float16.h5", "v1_float16_feat.h5", "v1_float32_feat.h5", "v1_topk_feat.h5"]


@pytest.mark.parametrize("name", FILES)
def test_v1_reads_as_c_and_as_its_upgrade(tmp_path, name):
    src = os.path.join(SEEDS, name)
    assert_same_as_export(src, str(tmp_path / "x1"))
    up = str(tmp_path / "up.h5")
    run_tool("kd-cache", "upgrade", src, up)
    with kdcache.open(src) as a, kdcache.open(up) as b:
        assert a.version == 1 and b.version == 2
        assert a.paths == b.paths
        assert a.file["views/box"].chunks[1] == a.views_per_image
        names = list(ARRAYS.values()) + ["topk/index", "topk/value"]
        for ds in names:
            if ds in a.file:
                np.testing.assert_array_equal(a.read(ds), b.read(ds), err_msg=ds)
        a.verify()
        b.verify()
        row, view = a.num_images - 1, a.views_per_image - 1
        for k, v in a.teacher(row, view).items():
            np.testing.assert_array_equal(v, b.teacher(row, view)[k])


def _flip_chunk(p):
    with h5py.File(p, "r") as f:
        info = f["logits"].id.get_chunk_info(1)  # v1: chunk 1 holds all views of images 4-7
    b = bytearray(open(p, "rb").read())
    b[info.byte_offset + info.size // 2] ^= 0xFF
    open(p, "wb").write(bytes(b))


def _rows(name, index, value):
    def m(p):
        with h5py.File(p, "r+") as f:
            f[name][index] = value
    return m


@pytest.mark.parametrize("case,mutate,phrase", [
    ("label", _rows("images/label", 2, 99), "image 2: label 99 outside [-1, 11)"),
    ("crc", _rows("images/crc32", 5, 1), "dataset_fingerprint does not match the image table"),
    ("done", _rows("progress/done", 1, 0), "marked complete but chunk 1 is not done"),
    ("chunk", _flip_chunk, "/logits chunk 1"),
], ids=["label", "crc", "done", "chunk"])
def test_v1_hostile(tmp_path, case, mutate, phrase):
    p = str(tmp_path / f"{case}.h5")
    shutil.copyfile(os.path.join(SEEDS, "v1_float16_feat.h5"), p)
    mutate(p)
    r = run_tool("kd-cache", "verify", p, check=False)
    assert r.returncode == 1 and phrase in r.stderr, r.stderr
    with pytest.raises(kdcache.CacheError) as e:
        kdcache.open(p).verify()
    assert phrase in str(e.value) and "\n" not in str(e.value), str(e.value)
