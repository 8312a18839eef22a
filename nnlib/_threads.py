"""The batch axis split over a few threads, for convolutional models.

BLAS runs one product on every core, but the passes around a convolution's products
(the patch matrix, col2im, pooling) are NumPy loops on one core. Two things stop a
simple split of those loops over threads: NumPy releases the GIL in them (good), but
OpenBLAS's idle workers spin for about 0.1 s after each threaded product, so a thread
started in that time shares its core with a spinner (measured on the 2-core EPYC: a
2-thread patch matrix took 3.6 ms right after a product, 2.4 ms 0.2 s later, 3.4 ms on
one thread). So inside :func:`parallel_region` OpenBLAS runs on one thread and the
batch is split instead, products included: each thread computes its samples' slice of
the output, or its samples' share of a weight gradient (the shares are added after).
Two single-thread products on the two halves took the time of one 2-thread product
(15488x288 by 288x64: 6.4 and 6.5 ms).

A sample's outputs come from the same operations whichever thread runs it; only weight
gradients, sums over the batch, depend on the split (the order of one addition).
Outside a region nothing is split and BLAS keeps its own threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from . import _blas
from ._buffers import cached_buffer

__all__ = ["get_num_threads", "set_num_threads", "parallel_region", "partition", "run", "matmul_rows",
           "matmul_t_sum", "MIN_SPLIT_ELEMENTS"]

#: a pass over fewer elements than this runs on the calling thread (a dispatch costs ~50 us,
#: a float32 pass over 256k strided elements ~200 us)
MIN_SPLIT_ELEMENTS = 1 << 18
#: the same for a product, counted in multiply-adds (8M take ~150 us on one thread)
MIN_SPLIT_PRODUCT = 1 << 23

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_in_worker = threading.local()
_region_depth = 0
_region_saved_blas: int | None = None  # BLAS's thread count before the outermost region, when it was changed


def _default_threads() -> int:
    env = os.environ.get("NNLIB_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"NNLIB_NUM_THREADS must be a positive int, got {env!r}") from None
        if value < 1:
            raise ValueError(f"NNLIB_NUM_THREADS must be a positive int, got {env!r}")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_num_threads = _default_threads()


def get_num_threads() -> int:
    """The number of threads a convolutional model's passes are split over (see :func:`set_num_threads`)."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the layers that split the batch (Conv2D, the pooling layers, and Dense
    inside a model that has them) while such a model runs ``fit``, ``evaluate`` or ``predict``.

    The default is the number of CPUs this process may run on, or the environment
    variable ``NNLIB_NUM_THREADS``. Each sample's outputs do not depend on it; weight
    gradients, sums over the batch, can differ in the last bits (as between BLAS builds).
    While such a pass runs, OpenBLAS has one thread for the whole process (other threads
    of the program included); before and after, it keeps its own count
    (``OPENBLAS_NUM_THREADS``).

    Parameters
    ----------
    n : int
        At least 1; 1 runs everything on the calling thread.
    """
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be a positive int, got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    with _lock:
        if n != _num_threads:
            # a run() in another thread may hold the old pool: it is dropped, not shut down (its idle
            # threads end when it is collected)
            _pool = None
        _num_threads = n


def _forget_workers_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own when it needs one."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_num_threads - 1, thread_name_prefix="nnlib")
        return _pool


def _run_in_worker(fn: Callable[[int, int, int], None], k: int, start: int, stop: int) -> None:
    _in_worker.active = True  # a split inside a worker runs inline: no pool waiting on itself
    fn(k, start, stop)


@contextmanager
def parallel_region() -> Iterator[None]:
    """Inside, :func:`partition` splits batches and OpenBLAS runs on one thread (restored at exit).

    Regions nest and may be entered from several threads; BLAS's count is restored when the
    last one exits. Nothing changes when one thread is configured or BLAS's thread count
    cannot be set (then batches are not split either).
    """
    global _region_depth, _region_saved_blas
    with _lock:
        if _region_depth == 0 and _num_threads > 1:
            saved = _blas.blas_threads()
            if saved is not None and saved > 1:
                _blas.set_blas_threads(1)
            _region_saved_blas = saved
        _region_depth += 1
    try:
        yield
    finally:
        with _lock:
            _region_depth -= 1
            if _region_depth == 0:
                if _region_saved_blas is not None and _region_saved_blas > 1:
                    _blas.set_blas_threads(_region_saved_blas)
                _region_saved_blas = None


def _splitting() -> bool:
    return _region_depth > 0 and _region_saved_blas is not None and _num_threads > 1 \
        and not getattr(_in_worker, "active", False)


def partition(n: int, elements: int, min_part: int | None = None) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` parts covering ``range(n)``: one per thread inside a region when each
    part has at least ``min_part`` (default :data:`MIN_SPLIT_ELEMENTS`) of the ``elements`` the whole pass
    touches, else ``[(0, n)]``."""
    min_part = MIN_SPLIT_ELEMENTS if min_part is None else min_part
    parts = min(_num_threads, n, elements // max(min_part, 1)) if _splitting() else 1
    if parts <= 1:
        return [(0, n)]
    bounds = [n * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run(parts: list[tuple[int, int]], fn: Callable[[int, int, int], None]) -> None:
    """Call ``fn(k, start, stop)`` for each part ``k`` of :func:`partition`, concurrently.

    ``fn`` must write only its own samples' slice of shared outputs (or part ``k``'s own
    buffer), and must not touch a layer's buffer cache (not thread-safe): the caller takes
    every buffer first. The calling thread runs part 0. Every part has finished when this
    returns, also when one raised; the first exception is then re-raised.
    """
    if len(parts) == 1:
        fn(0, *parts[0])
        return
    pool = _workers()
    futures = []
    error: BaseException | None = None
    try:
        for k, (start, stop) in enumerate(parts[1:], start=1):
            futures.append(pool.submit(_run_in_worker, fn, k, start, stop))
        fn(0, *parts[0])
    except BaseException as exc:  # noqa: BLE001 - re-raised below, once the workers are done with the buffers
        error = exc
    while True:  # wait for every submitted part, even through a KeyboardInterrupt (raised after)
        try:
            for future in futures:
                exc = future.exception()
                if error is None and exc is not None:
                    error = exc
            break
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error


def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = a @ b`` for 2-D arrays, each part of :func:`partition` computing its rows of ``out``."""
    if not _splitting():  # the common case (every MLP), without a closure
        return np.matmul(a, b, out=out)
    parts = partition(a.shape[0], a.shape[0] * a.shape[1] * b.shape[1], MIN_SPLIT_PRODUCT)

    def rows(_: int, start: int, stop: int) -> None:
        np.matmul(a[start:stop], b, out=out[start:stop])

    run(parts, rows)
    return out


def matmul_t_sum(a: np.ndarray, b: np.ndarray, out: np.ndarray, cache: dict, key: str) -> np.ndarray:
    """``out = a.T @ b`` for 2-D arrays with rows in common.

    With more outputs than rows in common (a Dense layer's ``x^T g``: 3136 x 128 from 128 samples), each
    part computes its rows of ``out`` from its columns of ``a``; else (many rows, few outputs) each part
    multiplies its rows into its own share, and the shares are added in part order (``cache[key]`` holds
    them), as :func:`nnlib._conv.conv2d_backward` does for ``dW`` inside its own split."""
    if not _splitting():
        return np.matmul(a.T, b, out=out)
    work = a.shape[0] * a.shape[1] * b.shape[1]
    if a.shape[0] < a.shape[1]:
        by_output = partition(a.shape[1], work, MIN_SPLIT_PRODUCT)

        def output_rows(_: int, start: int, stop: int) -> None:
            np.matmul(a[:, start:stop].T, b, out=out[start:stop])

        run(by_output, output_rows)
        return out
    parts = partition(a.shape[0], work, MIN_SPLIT_PRODUCT)
    if len(parts) == 1:
        return np.matmul(a.T, b, out=out)
    shares = cached_buffer(cache, key, (len(parts), *out.shape), out.dtype)

    def share(k: int, start: int, stop: int) -> None:
        np.matmul(a[start:stop].T, b[start:stop], out=shares[k])

    run(parts, share)
    return np.sum(shares, axis=0, out=out)
