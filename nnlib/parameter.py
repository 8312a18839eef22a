"""Trainable parameters and the flat buffer that can hold them all."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Parameter", "pack", "flat_view"]


class Parameter:
    """A trainable array and the gradient of the loss with respect to it.

    Parameters
    ----------
    value : ndarray
        The initial value; kept as given (no copy).
    name : str
        Readable name such as ``"dense_0/weight"``.

    Attributes
    ----------
    value : ndarray
        Updated in place by optimizers.
    grad : ndarray
        Same shape and dtype as ``value``; overwritten by each backward pass.
    name : str
    """

    __slots__ = ("value", "grad", "name")

    def __init__(self, value: np.ndarray, name: str = "param") -> None:
        self.value = value
        self.grad = np.zeros_like(value)
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def size(self) -> int:
        return self.value.size

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.value.shape}, dtype={self.value.dtype})"


def pack(params: Sequence[Parameter], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Move parameters into one contiguous value buffer and one gradient buffer.

    Each ``Parameter``'s ``value`` and ``grad`` become views into the buffers, in
    order, so an optimizer can update every parameter with a few whole-buffer
    ufuncs instead of one small call per array.

    Parameters
    ----------
    params : sequence of Parameter
    dtype : dtype

    Returns
    -------
    values, grads : ndarray of shape (P,)
        P is the total number of scalars.
    """
    total = sum(p.size for p in params)
    values = np.empty(total, dtype=dtype)
    grads = np.zeros(total, dtype=dtype)
    offset = 0
    for p in params:
        n = p.size
        values[offset:offset + n] = p.value.ravel()
        p.value = values[offset:offset + n].reshape(p.value.shape)
        p.grad = grads[offset:offset + n].reshape(p.value.shape)
        offset += n
    return values, grads


def flat_view(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """Return the 1-D buffer that ``arrays`` tile exactly, in order, or None.

    Used by optimizers to detect parameters packed by :func:`pack`.

    Parameters
    ----------
    arrays : sequence of ndarray

    Returns
    -------
    ndarray of shape (P,) or None
    """
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    item = base.itemsize
    offset = 0
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous:
            return None
        if a.__array_interface__["data"][0] != start + offset * item:
            return None
        offset += a.size
    return base if offset == base.size else None
