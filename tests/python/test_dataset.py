"""CacheDataset against kd-train itself: the same views in each epoch, the same
pixels and labels (kd-train's first batch of every epoch, dumped with
KDC_DUMP_BATCHES), and the teacher outputs of those exact views."""

import os
import shutil

import numpy as np
import pytest
import torch

import kdcache
from conftest import run_tool

SEED = 5


def dump_kd_train(env, tmp_path, cache, epochs, extra=()):
    dump = tmp_path / "dump"
    dump.mkdir()
    run_tool("kd-train", "--data", env.data, "--cache", cache, "--student", "resnet8x4",
             "--out", str(tmp_path / "run"), "--epochs", str(epochs), "--batch", "6",
             "--seed", str(SEED), "--quiet", *extra, env={"KDC_DUMP_BATCHES": str(dump)})
    out = []
    for e in range(epochs):
        rd = lambda ext, dt: np.fromfile(dump / f"epoch{e}.{ext}", dt)  # noqa: E731
        rows = rd("rows.i64", np.int64)
        out.append((rows, rd("views.i32", np.int32), rd("labels.i32", np.int32),
                    rd("pixels.f32", np.float32).reshape(len(rows), 3, 48, 48)))
    return out


def test_views_pixels_labels_equal_kd_train(env, tmp_path):
    epochs = 4  # more than V = 3: the view cycle wraps
    batches = dump_kd_train(env, tmp_path, env.ref16, epochs)
    ds = kdcache.CacheDataset(env.ref16, env.data, seed=SEED)
    pos = {int(r): i for i, r in enumerate(ds.rows)}
    with kdcache.open(env.ref16) as c:
        for e, (rows, views, labels, pixels) in enumerate(batches):
            ds.set_epoch(e)
            assert len(rows) == 6
            for j, r in enumerate(rows):
                it = ds[pos[int(r)]]
                assert int(it["row"]) == r
                assert int(it["view"]) == views[j], f"epoch {e} row {r}"
                assert int(it["label"]) == labels[j]
                # PIL's resampling is what kd-train reproduces byte for byte: equal floats.
                np.testing.assert_array_equal(it["image"].numpy(), pixels[j])
                np.testing.assert_array_equal(
                    it["logits"].numpy(), c.read("logits", int(r), int(views[j])).astype(np.float32))
    # kd-train's own rule, restated: every view once in V consecutive epochs.
    V = 3
    for r in range(20):
        assert sorted(kdcache.view_for_epoch(r, e, V, SEED, 8) for e in range(V)) == [0, 1, 2]


def test_all_views_and_workers(env):
    ds = kdcache.CacheDataset(env.ref16, env.data, seed=SEED, all_views=True)
    assert len(ds) == 18 * 3
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, shuffle=False)
    got = [b for b in loader]
    ds0 = kdcache.CacheDataset(env.ref16, env.data, seed=SEED, all_views=True)
    ref = [b for b in torch.utils.data.DataLoader(ds0, batch_size=8, num_workers=0)]
    assert len(got) == len(ref) == 7
    for a, b in zip(got, ref):
        for k in ("image", "logits", "features", "view", "row", "label"):
            assert torch.equal(a[k], b[k]), k
    views = torch.cat([b["view"] for b in got]).view(-1, 3)
    assert (views == torch.tensor([0, 1, 2])).all()
    assert got[0]["features"].shape == (8, 512) and got[0]["image"].shape == (8, 3, 48, 48)


def test_topk_items(env, tmp_path):
    k = str(tmp_path / "k.h5")
    run_tool("kd-precompute", "--data", env.data, "--teacher", "resnet18", "--weights",
             env.weights, "--logits", "topk:2", "--no-features", "--out", k, "--quiet",
             "--view-policy", "center", "--image-size", "48", "--resize-size", "56")
    ds = kdcache.CacheDataset(k, env.data)
    it = ds[0]
    assert set(it) == {"image", "label", "view", "row", "topk_index", "topk_value"}
    assert it["topk_index"].dtype == torch.int64 and it["topk_value"].shape == (2,)
    assert it["topk_value"][0] >= it["topk_value"][1]
    # The center view from Python fed to the same teacher gives the cached top-2.
    with torch.no_grad():
        logits = env.teacher(torch.stack([ds[i]["image"] for i in range(len(ds))]))
    idx = torch.stack([ds[i]["topk_index"] for i in range(len(ds))])
    val = torch.stack([ds[i]["topk_value"] for i in range(len(ds))])
    ref = torch.gather(logits, 1, idx)
    assert (ref - val).abs().max() <= 2 ** -9 * logits.abs().max()
    assert torch.equal(idx[:, 0], logits.argmax(1))


def test_changed_image_is_refused(env, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(env.data, data)
    with kdcache.open(env.ref16) as c:
        victim = c.paths[0]
    p = data / victim
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x40
    p.write_bytes(bytes(b))
    ds = kdcache.CacheDataset(env.ref16, str(data))
    with pytest.raises(kdcache.CacheError, match="contents differ from the file the cache"):
        ds[int(np.nonzero(ds.rows == 0)[0][0])]
    p.write_bytes(bytes(b) + b"x")
    with pytest.raises(kdcache.CacheError, match="bytes, but the cache .* was made from a file"):
        ds[int(np.nonzero(ds.rows == 0)[0][0])]
    os.remove(p)
    with pytest.raises(kdcache.CacheError, match="is not in the dataset"):
        kdcache.CacheDataset(env.ref16, str(data))
