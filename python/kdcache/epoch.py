"""Which cached view kd-train uses for each image in each epoch.

This restates formats/cache_stream.c (view_of): one view per image and epoch,
view = (mix64(seed ^ mix64(row)) mod V + epoch mod V) mod V, where row is the
image's cache row and seed is kd-train's --seed (not the cache's). So V
consecutive epochs use every cached view once. If kd-train's rule changes,
this function is the one place to change (tests/python/test_dataset.py checks
it against kd-train's own batches, dumped with KDC_DUMP_BATCHES).
"""

M64 = (1 << 64) - 1


def mix64(z):
    """splitmix64's finaliser (cache_stream.c mix64)."""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def view_for_epoch(row, epoch, views_per_image, seed=0, chunk_images=None):
    """The view kd-train trains on for cache row `row` in epoch `epoch`
    (chunk_images is unused today; it is there for a per-chunk rule)."""
    V = views_per_image
    return ((mix64((seed & M64) ^ mix64(row)) % V) + epoch % V) % V
