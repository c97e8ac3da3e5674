#!/usr/bin/python3
"""Export PyTorch weights as a safetensors file that kdcache loads
(kd-precompute --weights, kd-train --init).

Debian has no python3-safetensors package, so this writes the format itself:
8-byte little-endian header length, a JSON header (sorted names, each with
dtype, shape and [begin, end) byte offsets into the data section), padded with
spaces to a multiple of 8, then the raw little-endian tensor bytes.

Usage (Debian's /usr/bin/python3 with python3-torch / python3-torchvision):
  export_weights.py --arch resnet50 --weights-file resnet50-0676ba61.pth OUT.safetensors
      a torchvision checkpoint downloaded by hand (torch.save'd state_dict)
  export_weights.py --arch resnet18 --torchvision-weights DEFAULT OUT.safetensors
      torchvision's pretrained weights (downloads; needs network access)
  export_weights.py --state-dict ckpt.pth OUT.safetensors
      any state_dict, or a dict holding one under "model" / "state_dict" (as
      mdistiller checkpoints do); a DataParallel "module." prefix is removed
  --dtype f32|f16|bf16   storage type of the floating-point tensors (default f32)

Importable: save_file(tensors, path, metadata=None) and load_file(path).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

_DTYPES = {  # torch dtype name -> (safetensors name, numpy little-endian type)
    "float32": ("F32", "<f4"),
    "float16": ("F16", "<f2"),
    "bfloat16": ("BF16", "<u2"),  # raw bits
    "float64": ("F64", "<f8"),
    "int64": ("I64", "<i8"),
    "int32": ("I32", "<i4"),
}


def _raw_bytes(t):
    import torch
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise TypeError(f"unsupported dtype {t.dtype}")
    st_name, np_type = _DTYPES[name]
    if t.dtype == torch.bfloat16:
        a = t.view(torch.int16).numpy().view(np.uint16)
    else:
        a = t.numpy()
    return st_name, list(t.shape), np.ascontiguousarray(a).astype(np_type).tobytes()


def save_file(tensors, path, metadata=None):
    """Write a dict name -> torch tensor as safetensors; via path.partial + rename."""
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    for n in names:
        dt, shape, raw = _raw_bytes(tensors[n])
        header[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_file(path):
    """Read a safetensors file into a dict of torch tensors (F32/F16/BF16/F64/I64/I32)."""
    import torch
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    rev = {v[0]: (k, v[1]) for k, v in _DTYPES.items()}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        tname, np_type = rev[e["dtype"]]
        b, end = e["data_offsets"]
        if tname == "bfloat16":  # numpy has no bfloat16: read the bits as int16
            np_type = "<i2"
        a = np.frombuffer(data[base + b:base + end], dtype=np_type).reshape(e["shape"]).copy()
        t = torch.from_numpy(a)
        out[name] = t.view(torch.bfloat16) if tname == "bfloat16" else t
    return out


def convert(state_dict, dtype):
    import torch
    target = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    out = {}
    for k, v in state_dict.items():
        if k.startswith("module."):
            k = k[len("module."):]
        out[k] = v.to(target) if v.is_floating_point() else v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output .safetensors path")
    ap.add_argument("--arch", help="torchvision architecture name (resnet18, ...)")
    ap.add_argument("--torchvision-weights", help="torchvision weights enum name, e.g. DEFAULT")
    ap.add_argument("--weights-file", help="a torch.save'd state_dict for --arch")
    ap.add_argument("--state-dict", help="any torch.save'd state_dict (no --arch needed)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    a = ap.parse_args()
    import torch
    if a.state_dict:
        sd = torch.load(a.state_dict, map_location="cpu")
        for key in ("state_dict", "model"):
            if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
                sd = sd[key]
        arch = a.arch or ""
    elif a.arch:
        import torchvision
        if not hasattr(torchvision.models, a.arch):
            sys.exit(f"export_weights: torchvision has no architecture '{a.arch}'")
        if a.torchvision_weights:
            model = getattr(torchvision.models, a.arch)(weights=a.torchvision_weights)
        else:
            model = getattr(torchvision.models, a.arch)()
            if not a.weights_file:
                sys.exit("export_weights: give --weights-file or --torchvision-weights "
                         "(refusing to export random weights)")
            model.load_state_dict(torch.load(a.weights_file, map_location="cpu"))
        sd = model.state_dict()
        arch = a.arch
    else:
        sys.exit("export_weights: give --arch or --state-dict (see --help)")
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        sys.exit("export_weights: the input is not a state_dict of tensors")
    save_file(convert(sd, a.dtype), a.out, {"format": "pt", "arch": arch})
    print(f"export_weights: {len(sd)} tensors -> {a.out}")


if __name__ == "__main__":
    main()
