"""Source-length buckets: the single definition of the "1-10", ..., "41+" groups that the embedded
data is stratified over and that BLEU-by-length reports."""

from __future__ import annotations

from collections.abc import Sequence

LENGTH_BUCKETS: tuple[str, ...] = ("1-10", "11-20", "21-30", "31-40", "41+")


def _bucket_range(name: str) -> tuple[int, float]:
    """Parses a bucket name "a-b" (inclusive) or "a+" (open) into (low, high)."""
    if name.endswith("+"):
        return int(name[:-1]), float("inf")
    low, high = name.split("-")
    return int(low), int(high)


def length_bucket(n: int, buckets: Sequence[str] = LENGTH_BUCKETS) -> str:
    """Returns the name of the bucket holding a source of `n` words.

    Buckets are "a-b" (inclusive) or "a+" names. A length below the first bucket's lower bound
    (e.g. an empty source, n=0) falls into the first bucket; a negative length is an error.
    """
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    for name in buckets:
        low, high = _bucket_range(name)
        if n <= high:
            if n < low and name != buckets[0]:
                raise ValueError(f"length {n} falls in a gap before bucket {name!r} of {buckets}")
            return name
    raise ValueError(f"length {n} is beyond the last bucket of {tuple(buckets)}")
