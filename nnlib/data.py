"""Data at the boundary: input checks, the batch iterator, seeded shuffling and splitting, standardization.

Everything random here takes an explicit seed and builds its own
``numpy.random.Generator``; the global ``np.random`` state is never used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _blas
from ._buffers import cached_buffer
from ._validation import check_int, check_number, check_positive_int, format_shape

__all__ = [
    "check_features",
    "as_batch",
    "check_positive_int",
    "BatchIterator",
    "chunks",
    "share_of",
    "epoch_rng",
    "split_indices",
    "train_test_split",
    "Standardizer",
    "MemmapDataset",
]

# Streams derived from a model seed: (seed, stream, ...) never collide across uses.
INIT_STREAM, SHUFFLE_STREAM, SPLIT_STREAM = 0, 1, 2
_CHECK_CHUNK_ELEMENTS = 1 << 20


def check_features(x: Any, what: str = "x", dtype: Any = np.float32,
                   n_features: int | tuple[int, ...] | None = None, *, any_rank: bool = False,
                   lazy: bool = False) -> np.ndarray:
    """Validate a batch of samples and cast it once to ``dtype``.

    With ``lazy``, a memory-mapped ``x`` (``np.memmap``, ``np.load(..., mmap_mode="r")``) is
    checked in chunks, once, and returned as it is, in its own dtype: its users cast each
    batch (:func:`as_batch`), so anonymous memory does not grow with the file (a 784 MB
    uint8 file would become 3 GB of float32).

    Parameters
    ----------
    x : array-like of shape (N, D), or (N, ...) with ``any_rank``
    what : str
        The argument's name, for error messages.
    dtype : dtype
        The model's dtype; ``x`` is cast (copied only if needed) and made contiguous.
    n_features : int or tuple of int, optional
        Expected D, or the expected per-sample shape (``(28, 28, 1)``).
    any_rank : bool, default False
        Accept samples of any shape (images), not only flat ones.

    Returns
    -------
    ndarray of the shape of ``x``

    Raises
    ------
    TypeError
        For non-numeric data.
    ValueError
        For a wrong number of dimensions, an empty array, NaN or inf (or values too large
        for ``dtype``), or a wrong D or sample shape.
    """
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{what} could not be read as an array: {exc}") from None
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    expected = (n_features,) if isinstance(n_features, int) else n_features
    if arr.ndim < 2 or (arr.ndim != 2 and not any_rank and expected is None) or (
            expected is not None and len(expected) == 1 and arr.ndim != 2):
        hint = "; for one feature use x.reshape(-1, 1)" if arr.ndim == 1 else ""
        if expected is not None and len(expected) > 1:
            raise ValueError(f"{what} must have shape {format_shape(expected)}, got shape {arr.shape}")
        raise ValueError(f"{what} must be 2-D of shape (N, D), got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape})")
    if expected is not None and arr.shape[1:] != tuple(expected):
        if len(expected) == 1:
            raise ValueError(f"{what} has {arr.shape[1]} features, the model expects {expected[0]}")
        hint = "; add the channel axis with x[..., None]" if arr.shape[1:] + (1,) == tuple(expected) else ""
        raise ValueError(f"{what} has samples of shape {arr.shape[1:]}, the model expects {tuple(expected)}{hint}")
    if lazy and isinstance(x, np.memmap):
        _check_mapped(arr, what, np.dtype(dtype))
        return arr
    with np.errstate(over="ignore"):  # a float64 1e300 becomes inf in float32: reported just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    _report_nonfinite(arr, out, what)
    return out


def _report_nonfinite(arr: np.ndarray, cast: np.ndarray, what: str, offset: int = 0) -> None:
    """ValueError naming the first NaN or inf of ``cast`` (rows ``offset..`` of the caller's ``arr``)."""
    bad = _first_nonfinite(cast)
    if bad is not None:
        value = arr[bad]  # as the caller gave it
        too_large = f", too large for {cast.dtype}" if np.isfinite(value) else ""
        bad = (bad[0] + offset, *bad[1:])
        where = f"row {bad[0]}, column {bad[1]}" if arr.ndim == 2 else f"index {bad}"
        raise ValueError(f"{what} contains {value} at {where}{too_large}")


def _check_mapped(arr: np.ndarray, what: str, dtype: np.dtype) -> None:
    """The finiteness check of a memory-mapped ``arr``, a chunk of rows at a time (integers need none:
    every integer is a finite float32)."""
    if arr.dtype.kind != "f":
        return
    rows = max(1, _CHECK_CHUNK_ELEMENTS // max(1, arr.size // arr.shape[0]))
    for start in range(0, arr.shape[0], rows):
        part = arr[start:start + rows]
        with np.errstate(over="ignore"):
            cast = np.ascontiguousarray(part, dtype=dtype)
        _report_nonfinite(part, cast, what, start)


def as_batch(x: np.ndarray, dtype: Any) -> np.ndarray:
    """Rows of a checked input as the layers take them: ``x`` itself when it already has ``dtype`` (the
    usual case, cast once by :func:`check_features`), else a contiguous cast copy (a lazily checked memmap)."""
    return x if x.dtype == dtype else np.ascontiguousarray(x, dtype=dtype)


def _first_nonfinite(x: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN or inf in ``x`` (C-contiguous, at least 2-D), or None.

    ``sum(|x|)`` is finite exactly when every entry is, unless finite entries summing
    past the dtype's maximum (~3e38 for float32) overflow it: one read clears almost
    every array, and only a non-finite sum leads to the exact scan.
    """
    if math.isfinite(_blas.abs_sum(x.reshape(-1))):
        return None
    rows = max(1, _CHECK_CHUNK_ELEMENTS // (x.size // x.shape[0]))
    for start in range(0, x.shape[0], rows):  # chunks: no (N, ...) boolean temporary
        bad = np.argwhere(~np.isfinite(x[start:start + rows]))
        if bad.size:
            return (start + int(bad[0, 0]), *map(int, bad[0, 1:]))
    return None


def chunks(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of ``indices`` of length ``size`` (the last may be shorter)."""
    for start in range(0, indices.shape[0], size):
        yield indices[start:start + size]


class BatchIterator:
    """The mini-batches of an epoch: rows ``x[idx]``, ``y[idx]`` for consecutive slices of an order.

    Parameters
    ----------
    x : ndarray of shape (N, ...)
        Already checked and cast (:func:`check_features`).
    y : ndarray of shape (N,) or (N, D_out)
    batch_size : int > 0
        The last, smaller batch is kept.

    Notes
    -----
    Each batch of ``x`` is copied into one buffer the iterator owns, so a batch is valid
    only until the next one is drawn (``fit`` uses it for exactly one step); ``y``'s batch
    is a new, small array.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, dtype: Any = None) -> None:
        self.x, self.y, self.batch_size = x, y, check_positive_int(batch_size, "batch_size")
        self.dtype = x.dtype if dtype is None else np.dtype(dtype)  # a memmap's batches are cast to it
        self._flat = x.reshape(-1) if x.flags.c_contiguous else None  # a view, for gather's first touch
        self._buffers: dict = {}

    def __call__(self, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x_batch, y_batch)`` for the rows of ``order``, ``batch_size`` at a time."""
        for idx in chunks(order, self.batch_size):
            yield self.gather(idx), self.y[idx]

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """Samples ``x[idx]`` copied into the iterator's buffer, shape (len(idx), ...)."""
        x, n = self.x, idx.shape[0]
        width = x.size // x.shape[0]  # numbers per sample
        if self._flat is not None:
            # Read each row's first element first: these loads are independent, so they are in
            # flight together and start the hardware prefetchers on every row before the row
            # copies, which otherwise wait on memory one row at a time (measured 64 -> 57 us
            # for 128 rows of Fashion-MNIST).
            starts = np.multiply(idx, width, out=cached_buffer(self._buffers, "starts", (n,), np.intp))
            self._flat.take(starts, out=cached_buffer(self._buffers, "touched", (n,), x.dtype))
        # mode="clip": the indices are valid by construction, and mode="raise" would gather
        # into a hidden temporary before copying into `out` (measured 30% slower)
        raw = np.take(x, idx, axis=0, out=cached_buffer(self._buffers, "xb", (n, *x.shape[1:]), x.dtype),
                      mode="clip")
        if self.dtype == x.dtype:
            return raw
        cast = cached_buffer(self._buffers, "xb_cast", raw.shape, self.dtype)  # a memmap's batch, cast here
        np.copyto(cast, raw)
        return cast


def share_of(n: int, index: int, count: int) -> slice:
    """Part ``index`` of ``n`` rows cut into ``count`` contiguous parts whose sizes differ by at most one
    (the first ``n % count`` parts take one row more; a part is empty when ``n < count``)."""
    share, extra = divmod(n, count)
    start = index * share + min(index, extra)
    return slice(start, start + share + (index < extra))


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that shuffles epoch ``epoch``: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, SHUFFLE_STREAM, epoch])


def split_indices(n: int, fraction: float, seed: int, labels: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (kept, held-out) index arrays.

    Parameters
    ----------
    n : int
    fraction : float in (0, 1)
        Share held out, rounded to whole samples (at least one on each side).
    seed : int
    labels : ndarray of shape (n,), optional
        Integer class labels: when given, each class is split in the same
        proportion (stratified), as scikit-learn's ``stratify=y``.

    Returns
    -------
    kept, held_out : ndarray of int
        Sorted indices.
    """
    check_number(fraction, "the split fraction", 0.0, 1.0, low_open=True)
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into two non-empty parts")
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    n_out = min(max(int(round(fraction * n)), 1), n - 1)
    if labels is None:
        held = rng.permutation(n)[:n_out]
    else:
        # Per class, hold out its share; largest remainders settle the rounding.
        classes, inverse = np.unique(labels, return_inverse=True)
        counts = np.bincount(inverse)
        exact = counts * (n_out / n)
        take = np.floor(exact).astype(int)
        extra = n_out - take.sum()
        order = np.argsort(-(exact - take), kind="stable")
        take[order[:extra]] += 1
        held = np.concatenate([
            rng.permutation(np.flatnonzero(inverse == k))[:take[k]] for k in range(len(classes))
        ])
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def train_test_split(x: np.ndarray, y: np.ndarray, test_size: float = 0.25, seed: int = 0,
                     stratify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split arrays into train and test parts, reproducibly.

    Parameters
    ----------
    x : ndarray of shape (N, ...)
    y : ndarray of shape (N,) or (N, D)
    test_size : float in (0, 1)
    seed : int
    stratify : bool, default True
        Keep class proportions when ``y`` holds integer labels (N,).

    Returns
    -------
    x_train, x_test, y_train, y_test : ndarray
        In scikit-learn's order.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} and {len(y)}")
    labels = y if stratify and y.ndim == 1 and y.dtype.kind in "iu" else None
    train, test = split_indices(len(x), test_size, seed, labels)
    return x[train], x[test], y[train], y[test]


class Standardizer:
    """Scale features to zero mean and unit variance, fitted on training data only.

    Constant features (zero variance) are centred and left unscaled.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (D,)
    """

    def fit(self, x: np.ndarray) -> Standardizer:
        """Learn ``mean_`` and ``scale_`` from ``x`` of shape (N, D)."""
        x = check_features(x, "x", np.float64)
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Return ``(x - mean_) / scale_`` in ``x``'s float dtype (float32 for ints)."""
        if not hasattr(self, "mean_"):
            raise RuntimeError("Standardizer is not fitted: call fit(x_train) first")
        arr = np.asarray(x)
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float32
        x = check_features(arr, "x", dtype, n_features=self.mean_.shape[0])
        return ((x - self.mean_) / self.scale_).astype(dtype, copy=False)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)


class MemmapDataset:
    """Batches of an array on disk for ``fit``, read in nearly sequential order.

    A ready-made Keras ``PyDataset``-like object (``len()`` batches, ``ds[i] -> (x_batch,
    y_batch)``, ``on_epoch_end()``) for data larger than memory: ``x`` stays memory-mapped and
    each batch is read, then cast by ``fit``, on its own.

    Shuffling is by blocks: the rows are cut into blocks of ``block_rows`` consecutive rows,
    the blocks are taken in a random order and the rows of each block in a random order, so a
    batch's rows come from at most ``ceil(batch_size / block_rows) + 1`` blocks instead of from
    anywhere in the file (and are read in file order): the pages a batch touches lie close
    together. The order of
    epoch ``k`` is a function of ``(seed, k)`` only, as ``fit``'s own: set ``epoch`` to resume
    at a given epoch (``fit(initial_epoch=k)`` with ``ds.epoch = k``).

    Parameters
    ----------
    x : str, os.PathLike or ndarray of shape (N, ...)
        A ``.npy`` file (opened with ``mmap_mode="r"``; never unpickled) or an array (a memmap).
    y : array-like of shape (N,) or (N, D)
    batch_size : int > 0, default 32
    shuffle : bool, default True
    seed : int, default 0
    block_rows : int > 0, default 256
        Rows per shuffling block; larger reads more sequentially, smaller mixes more.
    num_shards, shard_index : int, default 1 and 0
        For a data-parallel fit (:class:`nnlib.distributed.DataParallel`): process
        ``shard_index`` of ``num_shards`` (``strategy.rank``, ``strategy.size``) reads only its
        share of every batch, the contiguous slice :meth:`DataParallel.local_rows` gives it,
        so the processes' batches together are this dataset's batches with one shard. Every
        batch, the last one included, must then have at least ``num_shards`` rows.

    Attributes
    ----------
    epoch : int
        The epoch whose order ``ds[i]`` follows; ``on_epoch_end`` adds one.
    """

    def __init__(self, x: Any, y: Any, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 block_rows: int = 256, num_shards: int = 1, shard_index: int = 0) -> None:
        if isinstance(x, (str, os.PathLike)):
            x = np.load(x, mmap_mode="r", allow_pickle=False)
        if not isinstance(x, np.ndarray):
            raise TypeError(f"MemmapDataset: x must be a .npy path or an array, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] == 0 or x.dtype == bool or x.dtype.kind not in "iuf":
            raise ValueError(f"MemmapDataset: x must be a non-empty numeric array of shape (N, ...), got shape "
                             f"{x.shape} and dtype {x.dtype}")
        y = np.asarray(y)
        if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
            raise ValueError(f"MemmapDataset: y must have {x.shape[0]} rows, as x, got shape {y.shape}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"MemmapDataset: shuffle must be True or False, got {shuffle!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"MemmapDataset: seed must be an int, got {seed!r}")
        self.x, self.y = x, y
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.block_rows = check_positive_int(block_rows, "block_rows")
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), 0
        self.num_shards = check_positive_int(num_shards, "MemmapDataset: num_shards")
        self.shard_index = check_int(shard_index, "MemmapDataset: shard_index", 0, self.num_shards - 1)
        smallest = min(self.batch_size, x.shape[0] - (len(self) - 1) * self.batch_size)
        if smallest < self.num_shards:
            raise ValueError(f"MemmapDataset: a batch of {smallest} rows cannot be split into num_shards="
                             f"{self.num_shards} non-empty shares; pick a batch_size of at least {self.num_shards} "
                             f"that leaves a last batch of at least {self.num_shards} of the {x.shape[0]} rows")
        self._order: np.ndarray | None = None
        self._order_epoch = -1

    def __len__(self) -> int:
        return -(-self.x.shape[0] // self.batch_size)

    def order(self) -> np.ndarray:
        """The row order of the current epoch (blocks shuffled, then the rows inside each)."""
        if self._order is None or self._order_epoch != self.epoch:
            n = self.x.shape[0]
            rows = np.arange(n)
            if self.shuffle:
                rng = epoch_rng(self.seed, self.epoch)
                starts = rng.permutation(np.arange(0, n, self.block_rows))
                rows = np.concatenate([start + rng.permutation(min(self.block_rows, n - start)) for start in starts])
            self._order, self._order_epoch = rows, self.epoch
        return self._order

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -len(self) <= i < len(self):
            raise IndexError(f"MemmapDataset has {len(self)} batches, got index {i!r}")
        i = int(i) % len(self)
        rows = np.sort(self.order()[i * self.batch_size:(i + 1) * self.batch_size])  # read in file order
        if self.num_shards > 1:  # this shard's share, as DataParallel splits a batch of arrays
            rows = rows[share_of(rows.shape[0], self.shard_index, self.num_shards)]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
