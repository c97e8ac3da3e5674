"""Cutting a cached view out of its image, as kd-train and kd-precompute do
(common/image/views.c, docs/IMAGES.md), with PIL, whose bilinear resampling
common/image/image_resize.c reproduces byte for byte.

- rrc:      img.crop(box).resize((S, S), BILINEAR), then the mirror;
- center:   Resize(R) of the whole image (shorter side R) then CenterCrop(S);
            the stored box is informative and checked;
- pad-crop: Resize((S, S)) (a copy when the image is S x S), then the S x S
            window at (y0, x0) of that frame with black outside, then the mirror.
Then ToTensor + Normalize in float32.
"""

import math

import numpy as np
import torch
from PIL import Image

from .errors import CacheError

_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR
_FLIP = getattr(Image, "Transpose", Image).FLIP_LEFT_RIGHT


def center_geometry(W, H, R, S):
    """(rw, rh, left, top): the Resize(R) size and the CenterCrop(S) offsets,
    as torchvision 0.14 computes them."""
    short, long = (W, H) if W <= H else (H, W)
    new_long = int(R * long / short)
    rw, rh = (R, new_long) if W <= H else (new_long, R)
    return rw, rh, int(round((rw - S) / 2.0)), int(round((rh - S) / 2.0))


def center_box(W, H, R, S):
    """The stored (y0, x0, h, w) of a center view: the crop's region in
    original pixels, rounded (docs/IMAGES.md)."""
    rw, rh, left, top = center_geometry(W, H, R, S)
    sx, sy = W / rw, H / rh  # the C code's order of operations, for equal doubles
    x0 = math.floor(left * sx + 0.5)
    y0 = math.floor(top * sy + 0.5)
    w = math.floor((left + S) * sx + 0.5) - x0
    h = math.floor((top + S) * sy + 0.5) - y0
    return (y0, x0, h, w)


def check_view(header, W, H, box, flip):
    """The checks of img_view_check: a damaged cache gives an error, not garbage."""
    y0, x0, h, w = (int(v) for v in box)
    S, P = header["image_size"], header["pad"]
    policy = header["view_policy"]
    ok = flip in (0, 1) and h >= 1 and w >= 1
    if policy == "rrc":
        ok = ok and y0 >= 0 and x0 >= 0 and y0 + h <= H and x0 + w <= W
    elif policy == "pad-crop":
        ok = ok and h == S and w == S and -P <= y0 <= P and -P <= x0 <= P
    else:
        ok = ok and (y0, x0, h, w) == center_box(W, H, header["resize_size"], S)
    if not ok:
        raise CacheError(f"view ({y0}, {x0}, {h}, {w}) flip {int(flip)} is not a {policy} "
                         f"view of a {W}x{H} image")


def render(header, img, box, flip):
    """The S x S RGB PIL image of one stored view of `img` (an RGB PIL image)."""
    W, H = img.size
    check_view(header, W, H, box, flip)
    y0, x0, h, w = (int(v) for v in box)
    S = header["image_size"]
    policy = header["view_policy"]
    if policy == "rrc":
        out = img.crop((x0, y0, x0 + w, y0 + h)).resize((S, S), _BILINEAR)
    elif policy == "center":
        rw, rh, left, top = center_geometry(W, H, header["resize_size"], S)
        out = img.resize((rw, rh), _BILINEAR).crop((left, top, left + S, top + S))
    else:
        frame = img if (W, H) == (S, S) else img.resize((S, S), _BILINEAR)
        out = frame.crop((x0, y0, x0 + S, y0 + S))  # black outside the frame
    if flip:
        out = out.transpose(_FLIP)
    return out


def normalize(header, rgb):
    """ToTensor + Normalize in float32 (mean/std rounded to float32 as the C
    loader does): a 3 x S x S tensor."""
    a = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
    x = a.to(torch.float32).div(255.0)
    mean = torch.tensor(header["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(header["std"], dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std
