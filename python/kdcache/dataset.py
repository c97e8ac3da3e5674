"""kdcache.CacheDataset: a torch Dataset over a complete cache and the image
folder it was made from, yielding the pixels of the cached view (cut as
kd-train cuts it) with the teacher's outputs for exactly those pixels."""

import os

import numpy as np
import torch
import h5py

from . import format as fmt
from .epoch import view_for_epoch
from .errors import CacheError
from .images import load_checked, match_listing
from .views import normalize, render


class CacheDataset(torch.utils.data.Dataset):
    """Items are dicts:

    - "image":  3 x S x S float32, normalised with the cache's mean/std;
    - "label":  int64 (-1 when unknown);
    - "logits": C float32 (float32/float16 caches), or "topk_index" K int64
      and "topk_value" K float32 (top-k caches);
    - "features": D float32 (caches with features);
    - "view": the view index, "row": the cache row.

    One view per image and epoch, the one kd-train uses with the same --seed
    (kdcache.epoch.view_for_epoch); call set_epoch(e) before each epoch, as
    with DistributedSampler. all_views=True instead yields every (image, view).
    Images the cache marks skipped are left out, as kd-train leaves them out.
    Each image file's size and CRC-32, and its decoded size, are checked
    against the cache (a mismatch is a CacheError). The HDF5 file is opened
    lazily in each process, so DataLoader workers each get their own handle.
    """

    def __init__(self, cache, root, seed=0, epoch=0, all_views=False, check_listing=True,
                 chunk_cache_bytes=64 << 20):
        self.cache_path = os.fspath(cache)
        self.root = os.fspath(root)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.all_views = bool(all_views)
        self.chunk_cache_bytes = int(chunk_cache_bytes)
        with fmt.open(self.cache_path) as c:
            self.header = dict(c.header)
            self.paths = c.paths
            self.label = c.label
            self.size, self.crc32 = c.size, c.crc32
            self.width, self.height = c.width, c.height
            self.box, self.flip = c.box, c.flip
            self.rows = np.nonzero(c.skipped == 0)[0].astype(np.int64)
        if check_listing:
            match_listing(self.cache_path, self.root, self.paths, self.label)
        self._cache = None
        self._pid = None

    # ---- epochs and views ----
    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def view_of(self, row):
        return view_for_epoch(int(row), self.epoch, self.header["views_per_image"], self.seed,
                              self.header["chunk_images"])

    def __len__(self):
        V = self.header["views_per_image"] if self.all_views else 1
        return len(self.rows) * V

    def _row_view(self, i):
        if self.all_views:
            V = self.header["views_per_image"]
            row = int(self.rows[i // V])
            return row, i % V
        row = int(self.rows[i])
        return row, self.view_of(row)

    # ---- the file, opened once per process ----
    def _file(self):
        if self._cache is None or self._pid != os.getpid():
            try:
                f = h5py.File(self.cache_path, "r", rdcc_nbytes=self.chunk_cache_bytes,
                              rdcc_nslots=4099)
            except OSError:
                raise CacheError(f"{self.cache_path}: cannot open as HDF5 (truncated or "
                                 f"corrupt?)") from None
            self._cache = fmt.Cache(self.cache_path, f, self.header, {})
            self._pid = os.getpid()
        return self._cache

    def __getstate__(self):
        s = dict(self.__dict__)
        s["_cache"] = None
        s["_pid"] = None
        return s

    def pixels(self, row, view):
        """The normalised 3 x S x S tensor of one (row, view)."""
        img = load_checked(self.cache_path, self.root, self.paths[row], self.size[row],
                           self.crc32[row], self.width[row], self.height[row])
        try:
            rgb = render(self.header, img, self.box[row, view], int(self.flip[row, view]))
        except CacheError as e:
            raise CacheError(f"{self.cache_path}: image {row} view {view}: {e}") from None
        return normalize(self.header, rgb)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        row, view = self._row_view(i)
        item = {"image": self.pixels(row, view),
                "label": torch.tensor(int(self.label[row]), dtype=torch.int64),
                "view": torch.tensor(view, dtype=torch.int64),
                "row": torch.tensor(row, dtype=torch.int64)}
        for k, v in self._file().teacher(row, view).items():
            item[k] = torch.from_numpy(np.ascontiguousarray(v))
        return item
