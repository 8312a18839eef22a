"""Argument checks, one rule for the whole library.

A value of the wrong type raises ``TypeError``; a value of the right type that is out
of range, not finite or not among the choices raises ``ValueError``. Every message
names the argument and the value received, in one style::

    lr must lie in (0, inf), got -1.0
    units must be a positive int, got 0
    EarlyStopping: patience must be an int >= 0, got -1
    restore_best_weights must be True or False, got 'yes'

``what`` is the argument's name as the user wrote it, optionally prefixed with its
owner (``"EarlyStopping: patience"``). Booleans are never accepted as numbers.
This module imports nothing from nnlib.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["check_number", "check_int", "check_positive_int", "check_bool", "check_choice", "check_name",
           "check_path", "check_float_dtype", "check_shape", "check_pair", "format_shape"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_real(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def check_number(value: Any, what: str, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float if it is a finite real number in the interval, else raise.

    Parameters
    ----------
    value : object
    what : str
        The argument's name, for the message.
    low, high : float
        The interval's ends; infinite ends are always open.
    low_open, high_open : bool
        Whether ``low`` (default closed) and ``high`` (default open) are excluded.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (a bool is not one).
    ValueError
        If it is NaN, infinite or outside the interval: "lr must lie in (0, inf), got -1.0".
    """
    if not _is_real(value):
        raise TypeError(f"{what} must be a number, got {value!r}")
    v = float(value)
    inside = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not (math.isfinite(v) and inside):
        opening = "(" if low_open or low == -math.inf else "["
        closing = ")" if high_open or high == math.inf else "]"
        raise ValueError(f"{what} must lie in {opening}{low:g}, {high:g}{closing}, got {value!r}")
    return v


def _as_int(value: Any, what: str, rule: str) -> int:
    """``operator.index(value)``, or TypeError "{what} must be {rule}, got ..." (bools refused)."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        return int(operator.index(value))
    except TypeError:
        raise TypeError(f"{what} must be {rule}, got {value!r}") from None


def check_int(value: Any, what: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int if it is an integer (``operator.index``) in ``[low, high]``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (a bool, a float such as 3.0 and a str are not).
    ValueError
        If it lies outside the bounds: "patience must be an int >= 1, got 0".
    """
    bounds = ([f">= {low}"] if low is not None else []) + ([f"<= {high}"] if high is not None else [])
    rule = " ".join(["an int", " and ".join(bounds)]).strip()
    n = _as_int(value, what, rule)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ValueError(f"{what} must be {rule}, got {value!r}")
    return n


def check_positive_int(value: Any, what: str) -> int:
    """``value`` as an int if it is an integer > 0: TypeError for other types, ValueError for <= 0."""
    n = _as_int(value, what, "a positive int")
    if n <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return n


def check_shape(value: Any, what: str) -> tuple[int, ...]:
    """A per-sample shape as a tuple of positive ints: an int ``D`` means ``(D,)``; a list or tuple
    of positive ints is accepted as is. TypeError for other types, ValueError for an empty shape
    or a size <= 0: "input_shape must be a tuple of positive ints, got (28, 0)"."""
    if _is_int(value):
        return (check_positive_int(value, what),)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{what} must be an int or a tuple of positive ints, got {value!r}")
    if not all(_is_int(v) for v in value):
        raise TypeError(f"{what} must be a tuple of positive ints, got {value!r}")
    if not value or any(int(v) <= 0 for v in value):
        raise ValueError(f"{what} must be a non-empty tuple of positive ints, got {tuple(value)!r}")
    return tuple(int(v) for v in value)


def check_pair(value: Any, what: str) -> tuple[int, int]:
    """``(a, b)`` of positive ints from an int (used twice) or a pair, as Keras's ``kernel_size=3``."""
    if _is_int(value):
        n = check_positive_int(value, what)
        return n, n
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return check_positive_int(value[0], what), check_positive_int(value[1], what)


def format_shape(shape: tuple[int, ...], batch: str = "N") -> str:
    """``(N, 28, 28, 1)``: a batch of per-sample ``shape`` as messages and summaries write it."""
    return "(" + ", ".join([batch, *map(str, shape)]) + ")"


def _is_int(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def check_bool(value: Any, what: str) -> bool:
    """``value`` if it is a bool (NumPy's included), else TypeError: "warn must be True or False, got 1"."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be True or False, got {value!r}")
    return bool(value)


def check_choice(value: Any, what: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    choices = tuple(choices)
    if isinstance(value, (bool, np.bool_)) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{what} must be one of {listed}, got {value!r}")
    return value


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a non-empty str: TypeError for another type, ValueError for ``""``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a non-empty str, got {value!r}")
    if not value:
        raise ValueError(f"{what} must be a non-empty str, got {value!r}")
    return value


def check_path(value: Any, what: str) -> str:
    """``os.fspath(value)`` if it is a non-empty str or os.PathLike: TypeError for another type, ValueError if empty."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a non-empty str or os.PathLike, got {value!r}")
    path = os.fspath(value)
    if not path:
        raise ValueError(f"{what} must be a non-empty str or os.PathLike, got {value!r}")
    return path


def check_float_dtype(dtype: Any, what: str = "dtype") -> np.dtype:
    """``np.dtype(dtype)`` if it is float32 or float64: TypeError if it names no dtype, else ValueError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{what} must be 'float32' or 'float64', got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise ValueError(f"{what} must be 'float32' or 'float64', got {dtype!r}")
    return resolved
