"""Which cached view kd-train uses for each image in each epoch.

This restates formats/cache_stream.c (view_of_chunk): one view per chunk and
epoch, drawn from kd-train's --seed (not the cache's), so an epoch reads one
view's part of each chunk (format v2 chunks the outputs one view at a time):

    chunk = row // chunk_images
    view  = (mix64(seed ^ mix64(chunk ^ "VIEWPERC")) mod V + epoch mod V) mod V

V consecutive epochs still use every cached view once. If kd-train's rule
changes, this function is the one place to change (tests/python/test_dataset.py
checks it against kd-train's own batches, dumped with KDC_DUMP_BATCHES).
"""

M64 = (1 << 64) - 1
VIEW_PER_CHUNK_TAG = 0x5649455750455243  # "VIEWPERC"


def mix64(z):
    """splitmix64's finaliser (cache_stream.c mix64)."""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def view_for_epoch(row, epoch, views_per_image, seed, chunk_images):
    """The view kd-train trains on for cache row `row` in epoch `epoch`, with
    kd-train's --seed `seed`, in a cache of `chunk_images` images per chunk."""
    V = views_per_image
    chunk = row // chunk_images
    return ((mix64((seed & M64) ^ mix64(chunk ^ VIEW_PER_CHUNK_TAG)) % V) + epoch % V) % V
