"""nnlib._validation: one rule for every argument check (a wrong type raises TypeError, a wrong
value ValueError) and one message style naming the argument and the value."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nnlib._validation import (
    check_bool,
    check_choice,
    check_float_dtype,
    check_int,
    check_name,
    check_number,
    check_path,
    check_positive_int,
)


@pytest.mark.parametrize("call,exc,message", [
    (lambda: check_number("1", "lr", 0.0), TypeError, "lr must be a number, got '1'"),
    (lambda: check_number(True, "lr", 0.0), TypeError, "lr must be a number, got True"),
    (lambda: check_number(None, "lr"), TypeError, "lr must be a number, got None"),
    (lambda: check_number(-1.0, "lr", 0.0, low_open=True), ValueError, "lr must lie in (0, inf), got -1.0"),
    (lambda: check_number(0, "lr", 0.0, low_open=True), ValueError, "lr must lie in (0, inf), got 0"),
    (lambda: check_number(1.0, "beta1", 0.0, 1.0), ValueError, "beta1 must lie in [0, 1), got 1.0"),
    (lambda: check_number(1.5, "gamma", 0.0, 1.0, low_open=True, high_open=False), ValueError,
     "gamma must lie in (0, 1], got 1.5"),
    (lambda: check_number(math.nan, "tol", 0.0), ValueError, "tol must lie in [0, inf), got nan"),
    (lambda: check_number(math.inf, "tol", 0.0), ValueError, "tol must lie in [0, inf), got inf"),
    (lambda: check_int(1.5, "patience", 1), TypeError, "patience must be an int >= 1, got 1.5"),
    (lambda: check_int(True, "patience", 0), TypeError, "patience must be an int >= 0, got True"),
    (lambda: check_int(0, "patience", 1), ValueError, "patience must be an int >= 1, got 0"),
    (lambda: check_int(5, "k", 0, 3), ValueError, "k must be an int >= 0 and <= 3, got 5"),
    (lambda: check_int("3", "k"), TypeError, "k must be an int, got '3'"),
    (lambda: check_positive_int(0, "units"), ValueError, "units must be a positive int, got 0"),
    (lambda: check_positive_int(2.0, "units"), TypeError, "units must be a positive int, got 2.0"),
    (lambda: check_positive_int(np.bool_(True), "units"), TypeError,
     f"units must be a positive int, got {np.bool_(True)!r}"),
    (lambda: check_bool(1, "EarlyStopping: restore_best_weights"), TypeError,
     "EarlyStopping: restore_best_weights must be True or False, got 1"),
    (lambda: check_choice("up", "mode", ("min", "max")), ValueError, "mode must be one of 'min', 'max', got 'up'"),
    (lambda: check_choice(True, "verbose", (0, 1, 2)), ValueError, "verbose must be one of 0, 1, 2, got True"),
    (lambda: check_name("", "monitor"), ValueError, "monitor must be a non-empty str, got ''"),
    (lambda: check_name(None, "monitor"), TypeError, "monitor must be a non-empty str, got None"),
    (lambda: check_path(3, "path"), TypeError, "path must be a non-empty str or os.PathLike, got 3"),
    (lambda: check_path("", "path"), ValueError, "path must be a non-empty str or os.PathLike, got ''"),
    (lambda: check_float_dtype("int32"), ValueError, "dtype must be 'float32' or 'float64', got 'int32'"),
    (lambda: check_float_dtype("float16"), ValueError, "dtype must be 'float32' or 'float64', got 'float16'"),
    (lambda: check_float_dtype("nonsense"), TypeError, "dtype must be 'float32' or 'float64', got 'nonsense'"),
])
def test_wrong_types_raise_typeerror_wrong_values_valueerror(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    assert str(info.value) == message


def test_valid_values_come_back_normalized():
    assert check_number(np.float32(0.5), "lr", 0.0) == 0.5 and type(check_number(1, "lr")) is float
    assert check_int(np.int64(3), "k", 0) == 3 and type(check_int(np.int64(3), "k")) is int
    assert check_positive_int(np.uint8(7), "units") == 7
    assert check_bool(np.bool_(False), "warn") is False
    assert check_choice(2, "verbose", (0, 1, 2)) == 2
    assert check_path(Path("a") / "b.csv", "path") == str(Path("a") / "b.csv")
    assert check_float_dtype(np.float32) == np.dtype(np.float32) and check_float_dtype("float64") == np.float64
    # the interval's ends: closed low and open high by default, both as asked
    assert check_number(0.0, "beta1", 0.0, 1.0) == 0.0
    assert check_number(1.0, "gamma", 0.0, 1.0, low_open=True, high_open=False) == 1.0
