"""Round trips both ways: files the C tools write, read in Python; files Python
fills, read by the C tools (kd-cache verify, kd-cache export, kd-train)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

import kdcache
from conftest import VIEW_ARGS, random_resnet18, run_tool

ARRAYS = {"label": "images/label", "size": "images/size", "crc32": "images/crc32",
          "height": "images/height", "width": "images/width", "skipped": "images/skipped",
          "box": "views/box", "flip": "views/flip", "logits": "logits",
          "features": "features"}


def export(path, out):
    run_tool("kd-cache", "export", path, "--format", "npy", "--out", out)
    with open(os.path.join(out, "paths.txt")) as f:
        paths = f.read().splitlines()
    with open(os.path.join(out, "attributes.json")) as f:
        attrs = json.load(f)
    return paths, attrs


def assert_same_as_export(path, out):
    """Everything kdcache.open gives equals what the C reader exports."""
    paths, attrs = export(path, out)
    with kdcache.open(path) as c:
        assert c.paths == paths
        for k in ("num_images", "views_per_image", "num_classes", "feature_dim",
                  "chunk_images", "teacher_arch", "logit_storage", "dataset_fingerprint"):
            assert c.header[k] == attrs[k], k
        for name, ds in ARRAYS.items():
            f = os.path.join(out, name + ".npy")
            if not os.path.exists(f):
                continue
            want = np.load(f)
            got = getattr(c, name) if hasattr(c, name) else c.read(ds)
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_c_written_file_reads_in_python(env, tmp_path):
    assert_same_as_export(env.ref16, str(tmp_path / "x16"))
    assert_same_as_export(env.ref32, str(tmp_path / "x32"))


def test_plan_has_kd_precompute_views(env):
    """--plan-only draws exactly the views a teacher run draws."""
    with kdcache.open(env.plan32, allow_incomplete=True) as p, kdcache.open(env.ref32) as r:
        assert p.header["teacher_arch"] == "external"
        assert p.header["complete"] == 0 and not p.done.any()
        for k in ("paths",):
            assert getattr(p, k) == getattr(r, k)
        for k in ("label", "size", "crc32", "height", "width", "skipped", "box", "flip"):
            np.testing.assert_array_equal(getattr(p, k), getattr(r, k), err_msg=k)
    with pytest.raises(kdcache.CacheError, match="is incomplete"):
        kdcache.open(env.plan32)


def filled(env, tmp_path, name, storage_plan):
    out = str(tmp_path / name)
    kdcache.fill(storage_plan, env.data, env.teacher, batch_size=16,
                 features=env.teacher.avgpool, out=out)
    return out


def test_fill_resnet18_equals_kd_precompute(env, tmp_path):
    """A cache filled from Python with torchvision's resnet18 holds kd-precompute's
    logits for the same weights (float32 storage) within 1e-3 relative."""
    out = filled(env, tmp_path, "py32.h5", env.plan32)
    with kdcache.open(out) as a, kdcache.open(env.ref32) as b:
        la, lb = a.read("logits").astype(np.float64), b.read("logits").astype(np.float64)
        rel = np.abs(la - lb).max() / np.abs(lb).max()
        assert rel < 1e-3, rel
        fa, fb = a.read("features").astype(np.float64), b.read("features").astype(np.float64)
        assert np.abs(fa - fb).max() / np.abs(fb).max() < 1e-3
        # The same layout and filters as the C writer made (shuffle, LZ4 32004, fletcher32).
        for name in ("logits", "features", "views/box"):
            da, db = a.file[name], b.file[name]
            assert da.chunks == db.chunks
            pa, pb = da.id.get_create_plist(), db.id.get_create_plist()
            fa_ = [pa.get_filter(i)[:3] for i in range(pa.get_nfilters())]
            fb_ = [pb.get_filter(i)[:3] for i in range(pb.get_nfilters())]
            assert fa_ == fb_ and [f[0] for f in fa_] == [2, 32004, 3]


def test_python_filled_file_reads_in_c(env, tmp_path):
    out = filled(env, tmp_path, "py.h5", env.plan32)
    r = run_tool("kd-cache", "verify", out, "--data", env.data)
    assert "ok" in r.stdout + r.stderr
    assert_same_as_export(out, str(tmp_path / "xpy"))
    run_tool("kd-train", "--data", env.data, "--cache", out, "--student", "resnet8x4",
             "--out", str(tmp_path / "run"), "--epochs", "1", "--batch", "8", "--quiet")
    assert os.path.exists(tmp_path / "run" / "student.safetensors")


def test_fill_float16_and_topk_match_kd_precompute(env, tmp_path):
    """float16 and top-k storage from Python: the conversion of the same float32
    outputs (float16 round to nearest even, top-k order and ties) as the C writer."""
    plan16 = str(tmp_path / "plan16.h5")
    run_tool("kd-precompute", "--data", env.data, "--plan-only", "--out", plan16, "--quiet",
             *VIEW_ARGS)
    out = str(tmp_path / "py16.h5")
    kdcache.fill(plan16, env.data, env.teacher, batch_size=16, out=out)
    with kdcache.open(out) as a, kdcache.open(env.ref16) as b:
        la, lb = a.read("logits").astype(np.float64), b.read("logits").astype(np.float64)
        # Both are float16 of float32 outputs that agree to ~1e-6: at most one ulp apart.
        assert np.abs(la - lb).max() <= np.abs(lb).max() * 2 ** -10
        assert "features" not in a.file
    plank = str(tmp_path / "plank.h5")
    run_tool("kd-precompute", "--data", env.data, "--plan-only", "--logits", "topk:2", "--out",
             plank, "--quiet", *VIEW_ARGS)
    outk = str(tmp_path / "pyk.h5")
    kdcache.fill(plank, env.data, env.teacher, batch_size=16, out=outk)
    with kdcache.open(outk) as a, kdcache.open(env.ref32) as b:
        idx = a.read("topk/index").astype(np.int64)
        val = a.read("topk/value").astype(np.float32)
        ref = b.read("logits")
        want = np.take_along_axis(ref, idx, 2)
        assert np.abs(val - want.astype(np.float16).astype(np.float32)).max() <= \
            np.abs(want).max() * 2 ** -10
        top = np.sort(ref, axis=2)[:, :, ::-1][:, :, :2]
        np.testing.assert_allclose(want, top, rtol=0, atol=1e-5 * np.abs(ref).max())
    run_tool("kd-cache", "verify", outk, "--data", env.data)


def test_fill_in_place_and_resume(env, tmp_path):
    """fill(plan) fills the plan's own path through PLAN.partial (the plan stays
    until the cache replaces it); a fill stopped after a chunk resumes (that
    chunk is not recomputed) and gives the same file contents; other weights
    cannot resume it."""
    plan = str(tmp_path / "plan.h5")
    shutil.copyfile(env.plan32, plan)
    calls = []

    class Stop(Exception):
        pass

    def stop_after_first_chunk(msg):
        calls.append(msg)
        raise Stop()

    with pytest.raises(Stop):
        kdcache.fill(plan, env.data, env.teacher, batch_size=16, features=env.teacher.avgpool,
                     log=stop_after_first_chunk)
    assert os.path.exists(plan) and os.path.exists(plan + ".partial")
    with kdcache.open(plan, allow_incomplete=True) as p:
        assert p.header["teacher_arch"] == "external" and not p.done.any()
    with kdcache.open(plan + ".partial", allow_incomplete=True) as p:
        assert list(p.done) == [1, 0, 0]
    other = random_resnet18(2)
    with pytest.raises(kdcache.CacheError, match="cannot resume.*other weights"):
        kdcache.fill(plan, env.data, other, features=other.avgpool)
    seen = []
    kdcache.fill(plan, env.data, env.teacher, batch_size=16, features=env.teacher.avgpool,
                 log=seen.append)
    assert seen == ["chunk 2/3 done", "chunk 3/3 done"]
    assert os.path.exists(plan) and not os.path.exists(plan + ".partial")
    fresh = filled(env, tmp_path, "fresh.h5", env.plan32)
    with kdcache.open(plan) as a, kdcache.open(fresh) as b:
        np.testing.assert_array_equal(a.read("logits"), b.read("logits"))
        np.testing.assert_array_equal(a.read("features"), b.read("features"))
    # A complete file: nothing to do.
    msgs = []
    kdcache.fill(plan, env.data, env.teacher, features=env.teacher.avgpool, log=msgs.append)
    assert "already complete" in msgs[0]


def test_fill_refuses_wrong_models(env, tmp_path):
    plan = str(tmp_path / "p.h5")
    shutil.copyfile(env.plan32, plan)
    with pytest.raises(kdcache.CacheError, match="feature_dim 512: give features"):
        kdcache.fill(plan, env.data, env.teacher)
    wide = torch.nn.Sequential(env.teacher, torch.nn.Linear(3, 7))
    with pytest.raises(kdcache.CacheError, match="gives 7 outputs.*num_classes 3"):
        kdcache.fill(plan, env.data, wide, features=env.teacher.avgpool)

    class NaNs(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3), float("nan")), torch.zeros(x.shape[0], 512)

    with pytest.raises(kdcache.CacheError, match="not finite"):
        kdcache.fill(plan, env.data, NaNs(), features=lambda m, x: m(x))
    with pytest.raises(kdcache.CacheError, match="is a kd-precompute run in progress"):
        kdcache.fill(_partial_of_run(env, tmp_path), env.data, env.teacher)


def _partial_of_run(env, tmp_path):
    """A kd-precompute file that is not complete (not a plan)."""
    p = str(tmp_path / "run.h5")
    shutil.copyfile(env.ref32, p)
    import h5py
    with h5py.File(p, "r+") as f:
        f.attrs.modify("complete", np.int64(0))
    return p


def test_plan_with_unreadable_image(env, tmp_path):
    """An unreadable image is skipped in the plan (zero rows, as kd-precompute
    skips it); fill leaves it out, CacheDataset never serves it, kd-cache verify
    accepts the result."""
    data = tmp_path / "data"
    shutil.copytree(env.data, data)
    (data / "class1" / "zz_empty.jpg").write_bytes(b"")
    plan = str(tmp_path / "plan.h5")
    r = run_tool("kd-precompute", "--data", data, "--plan-only", "--out", plan, *VIEW_ARGS)
    assert "skipped class1/zz_empty.jpg" in r.stderr
    with kdcache.open(plan, allow_incomplete=True) as p:
        bad = p.paths.index("class1/zz_empty.jpg")
        assert p.skipped[bad] == 1 and p.skipped.sum() == 1
        assert not p.box[bad].any() and p.height[bad] == 0
    kdcache.fill(plan, str(data), env.teacher, batch_size=16)
    run_tool("kd-cache", "verify", plan, "--data", data)
    ds = kdcache.CacheDataset(plan, str(data))
    assert len(ds) == 18 and bad not in set(ds.rows.tolist())
    with kdcache.open(plan) as c:
        assert not c.read("logits", bad).any()


def test_plan_only_command_line(env, tmp_path):
    out = str(tmp_path / "x.h5")
    for args, msg in [(["--teacher", "resnet18"], "--plan-only takes no --teacher"),
                      (["--resume"], "--plan-only takes no"),
                      (["--num-classes", "0"], "--num-classes")]:
        r = run_tool("kd-precompute", "--data", env.data, "--plan-only", "--out", out, *args,
                     check=False)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
    r = run_tool("kd-precompute", "--data", env.data, "--num-classes", "3", "--teacher",
                 "resnet18", "--weights", env.weights, "--out", out, check=False)
    assert r.returncode == 2 and "go with --plan-only" in r.stderr
    r = run_tool("kd-precompute", "--data", env.data, "--plan-only", "--num-classes", "2",
                 "--out", out, check=False)
    assert r.returncode == 1 and "but --num-classes is 2" in r.stderr
    run_tool("kd-precompute", "--data", env.data, "--plan-only", "--out", out, "--quiet")
    r = run_tool("kd-precompute", "--data", env.data, "--plan-only", "--out", out, check=False)
    assert r.returncode == 1 and "exists" in r.stderr
    with kdcache.open(out, allow_incomplete=True) as p:
        assert p.num_classes == 3 and p.feature_dim == 0  # the class folders, no features
