"""The one exception kdcache raises for anything wrong with a cache or its dataset."""


class CacheError(Exception):
    """A cache file (or the dataset it describes) is missing, malformed, corrupt
    or does not match: one line naming the file and what is wrong, worded as
    the C tools word it (formats/cache_reader.c)."""
