"""Tests for nnlib.functional: each function against a direct formula, stability, dtype, ``out=`` and errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnlib import functional as F

FLOATS = (np.float32, np.float64)
moderate = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=st.floats(-30, 30, allow_nan=False),
)


def ref_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- values against direct formulas -------------------------------------------------


def test_relu_matches_formula(rng):
    """relu(x) is x where x > 0 and 0 elsewhere."""
    x = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(F.relu(x), np.where(x > 0, x, 0.0))


@settings(max_examples=40, deadline=None)
@given(moderate)
def test_sigmoid_matches_formula(x):
    """sigmoid(x) == 1 / (1 + exp(-x)) for moderate x (absolute agreement)."""
    np.testing.assert_allclose(F.sigmoid(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_sigmoid_relative_accuracy_for_negative_inputs(dtype, rtol):
    """sigmoid keeps full *relative* precision for negative x, as 1/(1+exp(-x)) (or scipy's expit) does:
    sigmoid(-20) ~ 2.06e-9 must not come out as 0 or as a float32 rounding floor of ~3e-8."""
    x = np.linspace(-30, 30, 601).astype(dtype)
    expected = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(F.sigmoid(x), expected, rtol=rtol, atol=0)


@settings(max_examples=40, deadline=None)
@given(moderate)
def test_log_sigmoid_matches_formula(x):
    """log_sigmoid(x) == log(1 / (1 + exp(-x))) for moderate x."""
    np.testing.assert_allclose(F.log_sigmoid(x), -np.log1p(np.exp(-x)), rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(moderate)
def test_softmax_and_log_softmax_match_formula(z):
    """softmax is exp(z)/sum exp(z) row-wise; log_softmax is its log; rows sum to one."""
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(F.softmax(z), expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(F.log_softmax(z), z - np.log(np.exp(z).sum(axis=1, keepdims=True)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.softmax(z).sum(axis=1), 1.0, rtol=1e-12)


def test_softmax_small_hand_value():
    """softmax([0, log 3]) == [1/4, 3/4]; log_softmax == log of that."""
    z = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(F.softmax(z), [[0.25, 0.75]], rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(z), [[np.log(0.25), np.log(0.75)]], rtol=1e-14)


def test_one_hot_matches_identity_rows():
    """one_hot(labels, C) selects rows of the C x C identity."""
    labels = np.array([2, 0, 1, 2])
    np.testing.assert_array_equal(F.one_hot(labels, 3), np.eye(3)[labels])


def test_one_hot_accepts_integral_floats_and_dtype():
    """Integral float labels are accepted; ``dtype`` sets the output dtype."""
    out = F.one_hot(np.array([1.0, 0.0]), 2, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])


# -- stability ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_stable_at_large_magnitudes(dtype):
    """At ±1e4 every function is finite, warning-free and takes its limiting value."""
    z = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype=dtype)
    for f in (F.relu, F.sigmoid, F.log_sigmoid, F.softmax, F.log_softmax):
        assert np.all(np.isfinite(f(z))), f.__name__
    np.testing.assert_array_equal(F.sigmoid(z[0]), [1.0, 0.0])
    np.testing.assert_allclose(F.log_sigmoid(z[0]), [0.0, -1e4])
    np.testing.assert_allclose(F.softmax(z), [[1, 0], [0, 1], [0.5, 0.5]])
    np.testing.assert_allclose(F.log_softmax(z), [[0, -2e4], [-2e4, 0], [-np.log(2), -np.log(2)]], rtol=1e-6)


# -- dtype and out= ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("f", [F.relu, F.sigmoid, F.log_sigmoid, F.softmax, F.log_softmax])
def test_dtype_preserved_and_input_untouched(f, dtype, rng):
    """float32 in -> float32 out (and float64 -> float64); the input is not mutated."""
    x = rng.standard_normal((3, 4)).astype(dtype)
    before = x.copy()
    assert f(x).dtype == dtype
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("f, ref", [(F.relu, lambda x: np.where(x > 0, x, 0)),
                                    (F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
                                    (F.softmax, ref_softmax)])
def test_out_argument(f, ref, dtype, rng):
    """With ``out=``, the result is written into ``out`` and ``out`` itself is returned."""
    x = rng.standard_normal((3, 4)).astype(dtype)
    before = x.copy()
    out = np.full_like(x, np.nan)
    result = f(x, out=out)
    assert result is out
    np.testing.assert_allclose(out, ref(x.astype(np.float64)), rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(x, before)


def test_out_may_alias_input(rng):
    """``out=x`` computes in place (the documented way to opt in to mutation)."""
    x = rng.standard_normal((2, 3))
    expected = 1 / (1 + np.exp(-x))
    F.sigmoid(x, out=x)
    np.testing.assert_allclose(x, expected, rtol=1e-12)


# -- one_hot errors ------------------------------------------------------------------


@pytest.mark.parametrize("labels, num_classes, value", [
    (np.array([0, 3]), 3, "3"),
    (np.array([-1, 0]), 3, "-1"),
    (np.array([0.0, 1.5]), 3, "1.5"),
    (np.array([[0, 1]]), 3, "(1, 2)"),
])
def test_one_hot_errors_name_the_value(labels, num_classes, value):
    """Out-of-range, fractional and 2-D labels raise ValueError quoting the offending value or shape."""
    with pytest.raises(ValueError) as info:
        F.one_hot(labels, num_classes)
    assert value in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_hot_non_finite_labels(bad):
    """Non-finite labels raise ValueError (not a NumPy RuntimeWarning)."""
    with pytest.raises(ValueError):
        F.one_hot(np.array([0.0, bad]), 3)


# -- properties ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(moderate)
def test_softmax_is_exp_log_softmax_and_sigmoid_symmetry(z):
    """exp(log_softmax) == softmax, and sigmoid(-x) == 1 - sigmoid(x)."""
    np.testing.assert_allclose(np.exp(F.log_softmax(z)), F.softmax(z), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(F.sigmoid(-z), 1 - F.sigmoid(z), atol=1e-15)


def test_l2_norm_matches_the_definition_and_survives_float32_overflow():
    """sqrt(sum a^2), as a float; float32 squares beyond 3.4e38 fall back to float64, not inf."""
    a = np.array([[3.0, 4.0], [0.0, 12.0]], dtype=np.float32)
    assert F.l2_norm(a) == 13.0
    big = np.full(4, 1e20, dtype=np.float32)  # each square 1e40 overflows float32
    assert F.l2_norm(big) == pytest.approx(2e20, rel=1e-6)
    assert math.isnan(F.l2_norm(np.array([1.0, np.nan])))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("c", [1, 10, 32, 33, 100])
def test_row_max_and_row_sum_match_reductions(rng, dtype, c):
    """Both sides of row_max's 32-column switch (transposed copy, or axis=1) give each row's maximum,
    with or without a scratch array; row_sum gives each row's sum."""
    z = rng.standard_normal((7, c)).astype(dtype)
    z[3, c // 2] = 50.0  # a known maximum
    np.testing.assert_array_equal(F.row_max(z), z.max(axis=1))
    np.testing.assert_array_equal(F.row_max(z, np.empty((c, 7), dtype)), z.max(axis=1))
    assert F.row_max(z)[3] == 50.0 and F.row_max(z).dtype == dtype
    total = F.row_sum(z, np.ones(c, dtype))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(total, z.astype(np.float64).sum(axis=1), rtol=tol, atol=tol * c)
    assert total.dtype == dtype and F.row_sum(z).shape == (7,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_matches_scipy_expit_to_three_ulps_without_scipy(dtype):
    """nnlib's own sigmoid (exp(-|x|) on both branches) against SciPy's expit in float64 (the reference):
    within 3 ulps of the input dtype, relative, wherever the result is a normal float (measured 2.2 in
    float32, 1.7 in float64), exact 0.5 at 0, saturation to exactly 0 and 1 without warnings."""
    from scipy.special import expit

    x = np.concatenate([np.linspace(-120, 120, 200_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(dtype)
    x = np.concatenate([x, [np.finfo(dtype).max, -np.finfo(dtype).max]]).astype(dtype)
    got, want = F.sigmoid(x), expit(x.astype(np.float64))
    assert got.dtype == dtype
    normal = want >= np.finfo(dtype).tiny
    rel = np.abs(got - want)[normal] / want[normal]
    assert rel.max() <= 3 * np.finfo(dtype).eps
    assert np.all(got[~normal] <= np.finfo(dtype).tiny)
    assert got[-2] == 1.0 and got[-1] == 0.0 and F.sigmoid(np.array([0.0], dtype))[0] == 0.5
    inplace = x.copy()
    assert F.sigmoid(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, got)
