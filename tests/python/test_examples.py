"""python/examples/fill_vit.py: a torchvision ViT fills a plan; the C tools
accept the result, and its logits are the ViT's on kdcache's pixels."""

import os
import sys

import numpy as np
import torch

import kdcache
from conftest import REPO, run_tool

sys.path.insert(0, os.path.join(REPO, "python", "examples"))
import fill_vit  # noqa: E402


def test_fill_vit_tiny(env, tmp_path):
    plan = str(tmp_path / "vit.h5")
    run_tool("kd-precompute", "--data", env.data, "--plan-only", "--view-policy", "rrc",
             "--views", "2", "--image-size", "32", "--feature-dim", "64", "--chunk-images", "8",
             "--out", plan, "--quiet")
    fill_vit.main(["--plan", plan, "--data", env.data, "--arch", "tiny", "--batch", "16"])
    run_tool("kd-cache", "verify", plan, "--data", env.data)
    torch.manual_seed(0)
    model = fill_vit.build("tiny", 3, 32).eval()
    ds = kdcache.CacheDataset(plan, env.data, all_views=True)
    items = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        logits, feats = fill_vit.vit_features(model, torch.stack([it["image"] for it in items]))
    cached = torch.stack([it["logits"] for it in items])
    assert (cached - logits.half().float()).abs().max() <= 1e-3 * logits.abs().max()
    cf = torch.stack([it["features"] for it in items])
    assert (cf - feats.half().float()).abs().max() <= 1e-3 * feats.abs().max()
    run_tool("kd-train", "--data", env.data, "--cache", plan, "--student", "resnet8x4",
             "--out", str(tmp_path / "run"), "--epochs", "1", "--batch", "8",
             "--proj-weight", "1", "--quiet")
