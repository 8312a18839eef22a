"""nnlib/_blas.py: the one-pass vector updates on the BLAS path and on the NumPy fallback, and their agreement.

A test of the BLAS path skips, saying why (``_blas.describe()``), where NumPy's OpenBLAS is not bound, and
where it is bound asserts that its calls really reached BLAS (``blas_calls`` counts them), so no
comparison of the two paths can pass by running the fallback twice.
"""

from collections import Counter

import numpy as np
import pytest

from nnlib import _blas
from nnlib.optimizers import SGD, Adam, AdamW, Momentum, RMSprop
from nnlib.parameter import Parameter, pack

DTYPES = [np.float32, np.float64]


@pytest.fixture
def no_blas(monkeypatch):
    """Force the NumPy fallback, as on a machine without NumPy's bundled OpenBLAS."""
    monkeypatch.setattr(_blas, "_ROUTINES", {})


class CountedRoutines:
    """One dtype's BLAS routines, counting the calls that reach them."""

    def __init__(self, routines, calls):
        self._routines, self._calls = routines, calls

    def __getattr__(self, name):
        routine = getattr(self._routines, name)

        def counted(*args):
            self._calls[name] += 1
            return routine(*args)

        return counted


@pytest.fixture
def blas_calls(monkeypatch):
    """A Counter of the calls that reach the BLAS binding during the test, by routine; skips the test,
    with the reason, where the binding is absent."""
    if not _blas._ROUTINES:
        pytest.skip(f"the BLAS binding is absent here: {_blas.describe()}")
    calls = Counter()
    monkeypatch.setattr(_blas, "_ROUTINES", {dtype: CountedRoutines(r, calls) for dtype, r in _blas._ROUTINES.items()})
    return calls


@pytest.fixture(params=["blas", "fallback"])
def path(request, monkeypatch):
    """Run the test on the BLAS path (the returned Counter counts its calls; skipped, with the reason, where
    the binding is absent) or on the NumPy fallback (returns None)."""
    if request.param == "fallback":
        monkeypatch.setattr(_blas, "_ROUTINES", {})
        return None
    return request.getfixturevalue("blas_calls")


def assert_path_ran(calls, routine, times=None):
    """On the BLAS path, ``routine`` was called (``times`` times if given); on the fallback, nothing to check."""
    if calls is None:
        return
    assert calls[routine] > 0 if times is None else calls[routine] == times, dict(calls)


def arrays(dtype, n=10_007, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype), np.empty(n, dtype)


def test_describe_names_the_implementation():
    """describe() names the library bound, or says that NumPy ufuncs run and why."""
    text = _blas.describe()
    if _blas._ROUTINES:
        assert text.startswith("NumPy's OpenBLAS (libscipy_openblas64_") and "ufuncs" not in text
    else:
        assert text.endswith(": NumPy ufuncs")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a,b", [(1.0, 0.9), (0.37, 1.0), (-0.01, 0.5), (1.0, 1.0)])
def test_axpby_matches_the_formula(dtype, a, b, path):
    x, y, scratch = arrays(dtype)
    want = a * x.astype(np.float64) + b * y.astype(np.float64)
    _blas.axpby(a, x, b, y, scratch)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    assert y.dtype == dtype
    assert_path_ran(path, "axpby", times=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_axpy_matches_the_formula(dtype, path):
    x, y, scratch = arrays(dtype)
    want = y.astype(np.float64) - 0.25 * x.astype(np.float64)
    _blas.axpy(-0.25, x, y, scratch)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    assert_path_ran(path, "axpy", times=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_agrees_with_blas(dtype, blas_calls, monkeypatch):
    x, y0, scratch = arrays(dtype)
    results = []
    for routines in (_blas._ROUTINES, {}):
        monkeypatch.setattr(_blas, "_ROUTINES", routines)
        y = y0.copy()
        _blas.axpby(1.0, x, 0.9, y, scratch)
        _blas.axpy(-0.05, x, y, scratch)
        results.append(y)
    assert blas_calls == {"axpby": 1, "axpy": 1}  # the first run was BLAS's, the second NumPy's
    np.testing.assert_allclose(results[0], results[1], rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


def test_non_contiguous_or_mixed_arrays_take_the_fallback(blas_calls):
    x, y, scratch = arrays(np.float32, 20)
    assert _blas.available(x, y)  # the control: contiguous arrays of one dtype and size take BLAS
    assert not _blas.available(x[::2], y[::2])
    assert not _blas.available(x.astype(np.float64), y)
    assert not _blas.available(x[:10], y)
    y_strided = y[::2].copy()
    want = 2.0 * x[::2] + 3.0 * y_strided
    _blas.axpby(2.0, x[::2], 3.0, y_strided, scratch[::2])
    np.testing.assert_allclose(y_strided, want, rtol=1e-6)
    assert blas_calls == {}  # the strided update ran on the fallback
    read_only = y.copy()
    read_only.flags.writeable = False
    assert not _blas.available(x, read_only)


def test_the_fallback_gets_strided_arrays_right(no_blas):
    """The strided update above, where no binding exists."""
    x, y, scratch = arrays(np.float32, 20)
    y_strided = y[::2].copy()
    want = 2.0 * x[::2] + 3.0 * y_strided
    _blas.axpby(2.0, x[::2], 3.0, y_strided, scratch[::2])
    np.testing.assert_allclose(y_strided, want, rtol=1e-6)
    assert not _blas.available(x, y)


def test_a_chunk_gets_the_same_values_as_the_whole(path):
    # Optimizers run on one flat buffer or on each parameter: position must not matter.
    x, y0, scratch = arrays(np.float32, 100_003)
    whole = y0.copy()
    _blas.axpby(0.37, x, 0.9, whole, scratch)
    parts = y0.copy()
    for lo, hi in [(0, 7), (7, 1000), (1000, 50_001), (50_001, 100_003)]:
        _blas.axpby(0.37, x[lo:hi], 0.9, parts[lo:hi], scratch[lo:hi])
    np.testing.assert_array_equal(parts, whole)
    assert_path_ran(path, "axpby", times=5)


def test_pointer_cache_follows_new_arrays(blas_calls):
    """The data-address cache is the BLAS path's: new arrays that reuse a dead one's id get their own address."""
    for _ in range(3 * _blas._MAX_POINTERS):  # ids are reused after arrays die
        x, y, scratch = arrays(np.float32, 64, seed=_)
        want = y + x
        _blas.axpby(1.0, x, 1.0, y, scratch)
        np.testing.assert_allclose(y, want, rtol=1e-6)
    assert blas_calls["axpby"] == 3 * _blas._MAX_POINTERS


OPTIMIZERS = [
    lambda: SGD(lr=0.1, weight_decay=0.01),
    lambda: Momentum(lr=0.05, momentum=0.9),
    lambda: Momentum(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
    lambda: Adam(lr=0.01, weight_decay=0.1),
    lambda: AdamW(lr=0.01),
    lambda: RMSprop(lr=0.01, momentum=0.5, centered=True),
]


def train_steps(make, steps=5):
    rng = np.random.default_rng(7)
    params = [Parameter(rng.normal(size=(30, 20)), "w"), Parameter(rng.normal(size=20), "b")]
    pack(params, np.dtype(np.float64))
    opt = make()
    for _ in range(steps):
        for p in params:
            p.grad[...] = rng.normal(size=p.shape)
        opt.step(params)
    return [p.value.copy() for p in params]


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_optimizers_agree_with_and_without_blas(make, blas_calls, monkeypatch):
    with_blas = train_steps(make)
    assert sum(blas_calls.values()) >= 5  # at least one BLAS call a step
    monkeypatch.setattr(_blas, "_ROUTINES", {})
    without = train_steps(make)
    for a, b in zip(with_blas, without):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_fallback_runs_the_golden_momentum_step(no_blas):
    p = Parameter(np.array([1.0]))
    opt = Momentum(lr=0.1, momentum=0.9)
    for g in (0.5, -0.25):
        p.grad[...] = g
        opt.step([p])
    # v1 = 0.5, p1 = 0.95; v2 = 0.45 - 0.25 = 0.2, p2 = 0.95 - 0.02 = 0.93
    assert p.value[0] == pytest.approx(0.93, abs=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_axpby_consuming_updates_y_and_spends_x(dtype, path):
    x, y, _ = arrays(dtype)
    want = 0.001 * x.astype(np.float64) + 0.999 * y.astype(np.float64)
    _blas.axpby_consuming(0.001, x, 0.999, y)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    assert_path_ran(path, "rot", times=1)


@pytest.mark.parametrize("n", [19, 40_000])
def test_abs_sum_flags_non_finite_without_warnings(n, path):
    x = np.arange(1.0, n + 1.0, dtype=np.float32)
    x[::2] *= -1.0  # signs do not matter
    assert _blas.abs_sum(x) == pytest.approx(n * (n + 1) / 2, rel=1e-6)
    for at in (0, 7, n - 1):
        for bad in (np.inf, -np.inf, np.nan):
            y = x.copy()
            y[at] = bad
            assert not np.isfinite(_blas.abs_sum(y))  # filterwarnings=error: no warning either
    assert _blas.abs_sum(np.full(4, 1e38, np.float32)) == np.inf  # float32 sum overflows
    assert_path_ran(path, "asum", times=11)


def test_abs_sum_fallback(no_blas):
    assert _blas.abs_sum(-np.arange(1.0, 20.0)[::-1]) == 190.0
    assert not np.isfinite(_blas.abs_sum(np.array([1.0, np.nan])))
    assert _blas.abs_sum(np.array([1.0, -np.inf])) == np.inf
