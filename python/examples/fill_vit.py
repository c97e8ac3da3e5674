#!/usr/bin/python3
"""Fill a kd-precompute plan with a torchvision Vision Transformer teacher.

kd-precompute has no ViT; any PyTorch model can still be a teacher:

  kd-precompute --data DIR --plan-only --view-policy rrc --views 4 \\
                --num-classes 1000 --feature-dim 768 --out vit.h5
  python3 fill_vit.py --plan vit.h5 --data DIR [--weights vit_b_16.pth] [--device cuda]

then `kd-cache verify vit.h5 --data DIR` and `kd-train --cache vit.h5 ...` as with
any cache. The features are the class token after the encoder (the input of
the classification head, hidden_dim wide): plan with --feature-dim 768 for
vit_b_16, or --feature-dim 0 for logits only. Without --weights the model has
random weights (nothing is downloaded). --arch tiny is a 2-layer ViT of width
64 for quick tries on small images. The plan's --image-size must be a
multiple of the patch size (16; 8 for tiny).
"""

import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kdcache  # noqa: E402


def vit_features(model, x):
    """torchvision's VisionTransformer.forward, keeping the class token that
    feeds the head: (logits, features)."""
    n = x.shape[0]
    x = model._process_input(x)
    x = torch.cat([model.class_token.expand(n, -1, -1), x], dim=1)
    x = model.encoder(x)
    feats = x[:, 0]
    return model.heads(feats), feats


def build(arch, num_classes, image_size):
    if arch == "tiny":
        return torchvision.models.VisionTransformer(
            image_size=image_size, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64,
            mlp_dim=128, num_classes=num_classes)
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes,
                                             image_size=image_size)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", required=True, help="the plan (kd-precompute --plan-only)")
    p.add_argument("--data", required=True, help="the ImageFolder the plan was made from")
    p.add_argument("--out", help="the cache to write (default: the plan, filled in place)")
    p.add_argument("--arch", default="vit_b_16",
                   choices=["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "tiny"])
    p.add_argument("--weights", help="a state_dict saved with torch.save (default: random)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="for the random weights")
    args = p.parse_args(argv)
    with kdcache.open(args.plan, allow_incomplete=True) as c:
        h = c.header
    torch.manual_seed(args.seed)
    model = build(args.arch, h["num_classes"], h["image_size"])
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    features = None
    if h["feature_dim"] > 0:
        if h["feature_dim"] != model.hidden_dim:
            sys.exit(f"fill_vit: the plan has --feature-dim {h['feature_dim']}, {args.arch}'s "
                     f"features are {model.hidden_dim} wide")
        features = vit_features
    try:
        out = kdcache.fill(args.plan, args.data, model, batch_size=args.batch,
                           device=args.device, features=features, out=args.out,
                           log=lambda m: print(f"fill_vit: {m}", file=sys.stderr))
    except kdcache.CacheError as e:
        sys.exit(f"fill_vit: {e}")
    print(f"fill_vit: wrote {out}")


if __name__ == "__main__":
    main()
