"""kdcache.fill: any PyTorch teacher over the views of a plan written by
`kd-precompute --plan-only` (docs/CACHE_FORMAT.md, "Plans").

The plan already holds the image table and every view (box, flip) of every
image, and every dataset with its final shape, type, chunking and filters
(shuffle -> LZ4 32004 -> fletcher32, as the C writer made them). fill()
writes the teacher's outputs into those datasets chunk by chunk, in the C
writer's order (formats/cache_writer.c): the chunk's rows, flush, done[c] = 1,
flush, with HDF5 metadata evictions off so the file on disk is always the
last flushed state. It works on OUT.partial and renames it to OUT when every
chunk is done and `complete` is 1, so a killed fill is resumed by calling it
again (chunks already done are kept) and is never mistaken for a cache.
"""

import hashlib
import os
import shutil

import numpy as np
import torch
import h5py

from . import format as fmt
from .errors import CacheError
from .images import load_checked
from .views import normalize, render

F16_MAX = 65504.0


def model_sha256(model):
    """SHA-256 over the model's state_dict (names, dtypes, shapes, bytes):
    recorded as teacher_weights_sha256, so a resume refuses other weights."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else
                 t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def _set_str_attr(f, name, value):
    """Sets a string attribute keeping its kind: variable-length stays
    variable-length (v1), fixed-length becomes fixed-length of the value's
    length (v2: no variable-length type anywhere)."""
    b = value.encode("utf-8")
    dt = f.attrs.get_id(name).dtype
    info = h5py.check_string_dtype(dt)
    if info is None or info.length is None:
        f.attrs[name] = value
        return
    n = max(1, len(b))
    if info.length == n:  # in place, in the attribute's own (UTF-8) type
        a = f.attrs.get_id(name)
        a.write(np.array(b, dtype=f"S{n}"), mtype=a.get_type())
        return
    del f.attrs[name]
    f.attrs.create(name, np.array(b, dtype=f"S{n}"), dtype=h5py.string_dtype("utf-8", n))


def _writer_file(path):
    f = h5py.File(path, "r+")
    try:  # as cache_h5_fapl_for_writing(): dirty metadata reaches the disk at flushes only
        cfg = f.id.get_mdc_config()
        cfg.evictions_enabled = False
        cfg.incr_mode = 0        # H5C_incr__off
        cfg.flash_incr_mode = 0  # H5C_flash_incr__off
        cfg.decr_mode = 0        # H5C_decr__off
        f.id.set_mdc_config(cfg)
    except (AttributeError, ValueError, RuntimeError):
        pass
    return f


class _Teacher:
    """model(x) -> logits, and the features hook: None, a submodule whose
    output (flattened per sample) is the feature vector, or a callable
    features(model, x) -> (logits, features)."""

    def __init__(self, model, device, features):
        self.model = model.to(device).eval()
        self.device = device
        self.features = features
        self._captured = None
        self._handle = None
        if isinstance(features, torch.nn.Module):
            self._handle = features.register_forward_hook(self._capture)

    def _capture(self, _module, _inputs, output):
        self._captured = output

    def close(self):
        if self._handle is not None:
            self._handle.remove()

    @torch.no_grad()
    def __call__(self, x):
        x = x.to(self.device)
        feats = None
        if self.features is None:
            logits = self.model(x)
        elif isinstance(self.features, torch.nn.Module):
            self._captured = None
            logits = self.model(x)
            if self._captured is None:
                raise CacheError("the features module was not run by the model's forward")
            feats = self._captured
        else:
            logits, feats = self.features(self.model, x)
        logits = logits.detach().float().cpu().reshape(x.shape[0], -1).numpy()
        if feats is not None:
            feats = feats.detach().float().cpu().reshape(x.shape[0], -1).numpy()
        return logits, feats


def _topk(logits, K, index_dtype):
    # The K largest per row, sorted descending, ties to the lower class index
    # (cache_topk_rows); outputs are finite here (checked before).
    order = np.argsort(-logits, axis=1, kind="stable")[:, :K]
    return order.astype(index_dtype), np.take_along_axis(logits, order, 1).astype(np.float16)


def _check_finite(name, what, a, f16):
    bad = ~np.isfinite(a)
    if f16:
        bad |= np.abs(np.where(bad, 0, a)) > F16_MAX
    if bad.any():
        raise CacheError(f"{name}: the teacher's {what} is not finite"
                         f"{' in float16' if f16 else ''}; nothing of this chunk was written")


def _prepare(cache, out):
    """Returns the .partial path to fill, creating it from the plan when needed."""
    partial = out + ".partial"
    if os.path.exists(partial):
        return partial, True
    if os.path.exists(out) and out != cache:
        raise CacheError(f"{out} exists: remove it first (or fill it in place: out=None)")
    with fmt.open(cache, allow_incomplete=True) as c:
        h = c.header
        if h["complete"]:
            return None, False
        if h["teacher_arch"] != "external":
            raise CacheError(f"{cache} is a kd-precompute run in progress (teacher_arch "
                             f"{h['teacher_arch']}), not a plan: resume it with kd-precompute")
        if h["shard_count"] != 1:
            raise CacheError(f"{cache} is shard {h['shard_index']} of {h['shard_count']}: "
                             f"fill() takes unsharded plans")
    # A plan is small (no teacher outputs): it is copied, so it stays intact
    # until the complete cache replaces it (out == cache) or is named out.
    tmp = partial + ".copy"
    shutil.copyfile(cache, tmp)
    os.rename(tmp, partial)
    return partial, False


def fill(cache, root, model, batch_size=32, device="cpu", features=None, out=None, log=None):
    """Runs `model` over every planned view of the plan `cache` (images read
    from the ImageFolder `root`) and writes a complete cache to `out`
    (default: the plan's own path). Returns the path written.

    features: None (the plan must have feature_dim 0), a submodule of model
    whose output is the pooled feature vector (e.g. resnet's avgpool), or a
    callable features(model, x) -> (logits, features).
    Works on OUT.partial (a copy of the plan), renamed to OUT when complete.
    Resumes an interrupted fill (OUT.partial): chunks done are kept, and the
    model's weights must be the same (teacher_weights_sha256, set with the
    first chunk written)."""
    cache = os.fspath(cache)
    out = os.fspath(out) if out is not None else cache
    partial, resuming = _prepare(cache, out)
    if partial is None:
        if log:
            log(f"{out} is already complete; nothing to do")
        return out
    teacher = _Teacher(model, device, features)
    try:
        _fill(partial, out, root, teacher, model, int(batch_size), resuming, log)
    finally:
        teacher.close()
    return out


def _fill(partial, out, root, teacher, model, B, resuming, log):
    c = fmt.open(partial, allow_incomplete=True)
    h = c.header
    V, C, D, K = h["views_per_image"], h["num_classes"], h["feature_dim"], h["topk"]
    mode = h["logit_storage"]
    if h["teacher_arch"] != "external":
        raise CacheError(f"{partial} is not a plan (teacher_arch {h['teacher_arch']})")
    if (D > 0) != (teacher.features is not None):
        raise CacheError(f"{partial}: the plan has feature_dim {D}: " +
                         ("give features= (a module or a callable)" if D else
                          "it has no /features; plan with --feature-dim D to keep features"))
    sha = model_sha256(model)
    stored = h["teacher_weights_sha256"]
    c.close()
    if resuming and stored and stored != sha:
        raise CacheError(f"cannot resume: {partial} was filled by a teacher with other weights "
                         f"(teacher_weights_sha256 {stored[:16]}..., this model {sha[:16]}...); "
                         f"use the same model or remove it")
    f = _writer_file(partial)
    try:
        ix_dtype = fmt.topk_index_dtype(h)
        n_done = 0
        for ch in range(c.num_chunks):
            if c.done[ch]:
                continue
            first, count = c.chunk_images_of(ch)
            todo = [(r, v) for r in range(first, first + count) if not c.skipped[r]
                    for v in range(V)]
            logits = np.zeros((count, V, C), np.float32)
            feats = np.zeros((count, V, D), np.float32) if D else None
            for s in range(0, len(todo), B):
                part = todo[s:s + B]
                xs, imgs = [], {}
                for r, v in part:
                    if r not in imgs:
                        imgs = {r: load_checked(partial, root, c.paths[r], c.size[r], c.crc32[r],
                                                c.width[r], c.height[r])}
                    try:
                        rgb = render(h, imgs[r], c.box[r, v], int(c.flip[r, v]))
                    except CacheError as e:
                        raise CacheError(f"{partial}: image {r} view {v}: {e}") from None
                    xs.append(normalize(h, rgb))
                lo, fe = teacher(torch.stack(xs))
                if lo.shape[1] != C:
                    raise CacheError(f"the model gives {lo.shape[1]} outputs, the plan "
                                     f"{partial} has num_classes {C}")
                if D and fe.shape[1] != D:
                    raise CacheError(f"the features hook gives {fe.shape[1]} values, the plan "
                                     f"{partial} has feature_dim {D}")
                for j, (r, v) in enumerate(part):
                    logits[r - first, v] = lo[j]
                    if D:
                        feats[r - first, v] = fe[j]
            if stored != sha:  # with the first chunk: a model refused before it can retry
                _set_str_attr(f, "teacher_weights_sha256", sha)
                stored = sha
            rows = slice(first, first + count)
            where = f"{partial} chunk {ch} (images {first}-{first + count - 1})"
            _check_finite(where, "output", logits, mode != "float32")
            if mode == "float32":
                f["logits"][rows] = logits
            elif mode == "float16":
                f["logits"][rows] = logits.astype(np.float16)
            else:
                idx, val = _topk(logits.reshape(-1, C), K, ix_dtype)
                f["topk/index"][rows] = idx.reshape(count, V, K)
                f["topk/value"][rows] = val.reshape(count, V, K)
            if D:
                _check_finite(where, "features", feats, True)
                f["features"][rows] = feats.astype(np.float16)
            f.flush()
            f["progress/done"][ch] = 1
            f.flush()
            n_done += 1
            if log:
                log(f"chunk {ch + 1}/{c.num_chunks} done")
        if h["kdcache_version"] >= 2:
            fp = fmt.fingerprint(c.paths, c.size, c.crc32)
            _set_str_attr(f, "dataset_fingerprint", fp)
        f.attrs.modify("complete", np.int64(1))
        f.flush()
    finally:
        f.close()
    # The file as a whole, as any reader will see it, before it gets its name.
    fmt.open(partial).close()
    os.rename(partial, out)
