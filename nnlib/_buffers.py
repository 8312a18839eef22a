"""Reusable scratch arrays for hot paths (one dict per owner, keyed by name and shape)."""

from __future__ import annotations

from typing import Any

import numpy as np

_MAX_ENTRIES = 32  # batch sizes come and go (predict chunks, the last partial batch)


def cached_buffer(cache: dict, key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Return ``cache``'s array for ``(key, shape, dtype)``, allocating it on first use.

    The caller owns the contents only until its next call with the same key and
    shape; this is what lets a training step run without fresh allocations. The
    array last returned for ``key`` is also kept under ``key`` alone, so the common
    case (same shape as last time) is one dict lookup and two comparisons.
    """
    last = cache.get(key)
    if last is not None and last.shape == shape and last.dtype == dtype:
        return last
    dtype = np.dtype(dtype)
    buf = cache.get((key, shape, dtype))
    if buf is None:
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        buf = cache[(key, shape, dtype)] = np.empty(shape, dtype=dtype)
    cache[key] = buf
    return buf


def cached_ones(cache: dict, n: int, dtype: Any) -> np.ndarray:
    """A vector of ``n`` ones kept in ``cache`` (for ``1^T g`` products); callers never write it."""
    key = ("ones", n, np.dtype(dtype))
    ones = cache.get(key)
    if ones is None:
        ones = cache[key] = np.ones(n, dtype)
    return ones
