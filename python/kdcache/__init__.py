"""kdcache from Python: read a teacher cache in PyTorch, and fill a plan
(`kd-precompute --plan-only`) from any PyTorch teacher. docs/PYTHON.md."""

from .errors import CacheError
from .format import Cache, fingerprint
from .format import open  # noqa: A004  (kdcache.open)
from .epoch import view_for_epoch
from .dataset import CacheDataset
from .fill import fill

__all__ = ["CacheError", "Cache", "open", "fingerprint", "view_for_epoch", "CacheDataset",
           "fill"]
__version__ = "1.0"
