"""Tests for nnlib.losses: values and gradients against independent formulas, stability, gradient checks,
the registry names, target validation and the user-facing transform."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import softmax as sp_softmax

import nnlib as nn
from nnlib import losses


def ref_ce(z, t):
    """-mean_n sum_c t_nc log softmax(z_n)_c, with scipy's log_softmax."""
    return float(-np.mean(np.sum(t * sp_log_softmax(z, axis=1), axis=1)))


def onehot(labels, c):
    return np.eye(c)[labels]


# -- SoftmaxCrossEntropy --------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(2, 6), seed=st.integers(0, 2**16),
       target=st.sampled_from(["labels", "onehot", "probs"]))
def test_softmax_ce_value_and_gradient(n, c, seed, target):
    """Loss == -mean(log softmax) for labels, one-hot and probability rows; backward == (softmax - t)/N."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, c))
    labels = rng.integers(0, c, n)
    t = onehot(labels, c) if target != "probs" else rng.dirichlet(np.ones(c), n)
    y = labels if target == "labels" else t
    loss = nn.SoftmaxCrossEntropy()
    assert loss.forward(z, y) == pytest.approx(ref_ce(z, t), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(loss.backward(), (sp_softmax(z, axis=1) - t) / n, rtol=1e-10, atol=1e-15)


def test_softmax_ce_hand_value():
    """Two equal logits and label 0: loss = log 2, gradient = [(1/2 - 1), 1/2] / N."""
    loss = nn.SoftmaxCrossEntropy()
    assert loss.forward(np.zeros((1, 2)), np.array([0])) == pytest.approx(np.log(2), rel=1e-14)
    np.testing.assert_allclose(loss.backward(), [[-0.5, 0.5]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("as_onehot", [False, True])
def test_softmax_ce_large_logits(dtype, as_onehot):
    """Logits ±1e4 give the exact finite loss (0 or 2e4 per row) and a finite gradient of the logits' dtype."""
    z = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]], dtype=dtype)
    labels = np.array([0, 1])
    loss = nn.SoftmaxCrossEntropy()
    value = loss.forward(z, onehot(labels, 3) if as_onehot else labels)
    assert value == pytest.approx((0 + 2e4) / 2, rel=1e-6)
    grad = loss.backward()
    assert grad.dtype == dtype and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0, 0, 0], [0.5, -0.5, 0]], atol=1e-6)


@pytest.mark.parametrize("z, y", [
    (np.zeros((2, 3)), np.array([0, 3])),
    (np.zeros((2, 3)), np.array([-1, 0])),
    (np.zeros((2, 3)), np.array([0, 1, 2])),
    (np.zeros((2, 3)), np.array([0.0, 1.0])),
    (np.zeros((2, 3)), np.zeros((2, 4))),
    (np.zeros((2, 1)), np.array([0, 0])),
    (np.zeros(3), np.array([0])),
], ids=["label_high", "label_negative", "labels_too_many", "float_labels", "onehot_width", "one_logit", "1d_logits"])
def test_softmax_ce_bad_targets(z, y):
    """Labels out of range, non-integer, or of the wrong shape raise ValueError."""
    with pytest.raises(ValueError):
        nn.SoftmaxCrossEntropy().forward(z, y)


# -- MSE ------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_mse_value_and_gradient(n, d, seed):
    """MSE == mean of squared errors over all N*D elements (no 1/2); backward == 2 (y - t) / (N D)."""
    rng = np.random.default_rng(seed)
    y, t = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    loss = nn.MSE()
    expected = sum((y[i, j] - t[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    assert loss.forward(y, t) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), 2 * (y - t) / (n * d), rtol=1e-12)


def test_mse_hand_value_and_flat_targets():
    """(N,) targets are accepted for one output: preds [1, 2, 3] vs [1, 0, 0] -> (0 + 4 + 9)/3."""
    loss = nn.MSE()
    y = np.array([[1.0], [2.0], [3.0]])
    assert loss.forward(y, np.array([1.0, 0.0, 0.0])) == pytest.approx(13 / 3)
    grad = loss.backward()
    assert grad.shape == (3, 1)
    np.testing.assert_allclose(grad, [[0.0], [4 / 3], [2.0]])


def test_mse_shape_mismatch():
    """Targets whose shape does not match the predictions raise ValueError."""
    with pytest.raises(ValueError):
        nn.MSE().forward(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        nn.MSE().forward(np.zeros((3, 2)), np.zeros(3))


# -- BinaryCrossEntropy -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 4), seed=st.integers(0, 2**16), soft=st.booleans())
def test_bce_value_and_gradient(n, d, seed, soft):
    """BCE from logits == mean(-t log s - (1-t) log(1-s)) with s = sigmoid(z); backward == (s - t)/M."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, d))
    t = rng.uniform(0, 1, (n, d)) if soft else rng.integers(0, 2, (n, d)).astype(float)
    s = expit(z)
    expected = np.mean(-t * np.log(s) - (1 - t) * np.log(1 - s))
    loss = nn.BinaryCrossEntropy()
    assert loss.forward(z, t) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(loss.backward(), (s - t) / (n * d), rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_large_logits(dtype):
    """Logits ±1e4: a confident right answer costs 0, a confident wrong one costs |z|; all finite."""
    z = np.array([[1e4], [-1e4], [1e4], [-1e4]], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0])
    loss = nn.BinaryCrossEntropy()
    assert loss.forward(z, t) == pytest.approx((0 + 0 + 1e4 + 1e4) / 4, rel=1e-6)
    grad = loss.backward()
    assert grad.shape == (4, 1) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0.0], [0.0], [0.25], [-0.25]], atol=1e-7)


# -- gradient checks ----------------------------------------------------------------------------

CHECK_CASES = [
    ("softmax_ce_labels", nn.SoftmaxCrossEntropy, (1, 2), lambda rng, s: rng.integers(0, s[1], s[0])),
    ("softmax_ce_labels", nn.SoftmaxCrossEntropy, (4, 3), lambda rng, s: rng.integers(0, s[1], s[0])),
    ("softmax_ce_probs", nn.SoftmaxCrossEntropy, (3, 4), lambda rng, s: rng.dirichlet(np.ones(s[1]), s[0])),
    ("mse", nn.MSE, (1, 1), lambda rng, s: rng.standard_normal(s)),
    ("mse", nn.MSE, (4, 3), lambda rng, s: rng.standard_normal(s)),
    ("mse_flat", nn.MSE, (5, 1), lambda rng, s: rng.standard_normal(s[0])),
    ("bce", nn.BinaryCrossEntropy, (3, 1), lambda rng, s: rng.integers(0, 2, s).astype(float)),
    ("bce_soft", nn.BinaryCrossEntropy, (2, 3), lambda rng, s: rng.uniform(0, 1, s)),
]


@pytest.mark.parametrize("name, cls, shape, targets", CHECK_CASES, ids=[f"{c[0]}-{c[2]}" for c in CHECK_CASES])
def test_loss_gradient_checks(name, cls, shape, targets, rng):
    """Numeric (central differences) and symbolic (sympy) checks both agree with backward."""
    x = rng.normal(0, 2, shape)
    y = targets(rng, shape)
    numeric = nn.check_gradients(cls(), x, y)
    assert numeric.ok, str(numeric)
    symbolic = nn.check_symbolic(cls(), x=x, y=y)
    assert symbolic.ok, str(symbolic)


# -- registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [
    ("softmax_cross_entropy", nn.SoftmaxCrossEntropy),
    ("categorical_crossentropy", nn.SoftmaxCrossEntropy),
    ("sparse_categorical_crossentropy", nn.SoftmaxCrossEntropy),
    ("cross_entropy", nn.SoftmaxCrossEntropy),
    ("mse", nn.MSE),
    ("mean_squared_error", nn.MSE),
    ("binary_cross_entropy", nn.BinaryCrossEntropy),
])
def test_registry_names(name, cls):
    """Each name and alias resolves to an instance of the right class (also upper-case)."""
    assert type(losses.get(name)) is cls
    assert type(nn.losses.get(name.upper())) is cls


def test_unknown_loss_lists_names():
    """An unknown loss name raises ValueError listing the valid names."""
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        losses.get("hinge_but_misspelt")


# -- prepare_targets --------------------------------------------------------------------------------

BAD_TARGETS = [
    (nn.SoftmaxCrossEntropy, np.array([0.0, 1.5]), 3, ValueError, "1.5"),
    (nn.SoftmaxCrossEntropy, np.array([0, 3]), 3, ValueError, "3"),
    (nn.SoftmaxCrossEntropy, np.array([-1, 2]), 3, ValueError, "-1"),
    (nn.SoftmaxCrossEntropy, np.zeros((2, 4)), 3, ValueError, "(2, 4)"),
    (nn.SoftmaxCrossEntropy, np.array([0.0, np.nan]), 3, ValueError, "nan"),
    (nn.SoftmaxCrossEntropy, np.array([[np.nan, 0, 1]]), 3, ValueError, "nan"),
    (nn.SoftmaxCrossEntropy, np.array(["a", "b"]), 3, TypeError, "<U1"),
    (nn.SoftmaxCrossEntropy, np.array([]), 3, ValueError, "(0,)"),
    (nn.SoftmaxCrossEntropy, np.array([0, 1]), 1, ValueError, "1"),
    (nn.MSE, np.array([[1.0, np.inf]]), 2, ValueError, "inf"),
    (nn.MSE, np.zeros((2, 3)), 2, ValueError, "(2, 3)"),
    (nn.MSE, np.array([True, False]), 1, TypeError, "bool"),
    (nn.MSE, np.zeros((0, 2)), 2, ValueError, "(0, 2)"),
    (nn.BinaryCrossEntropy, np.array([0.0, 1.5]), 1, ValueError, "1.5"),
    (nn.BinaryCrossEntropy, np.array([-0.5, 1.0]), 1, ValueError, "-0.5"),
    (nn.BinaryCrossEntropy, np.array([np.nan, 1.0]), 1, ValueError, "nan"),
    (nn.BinaryCrossEntropy, np.array([None, 1.0]), 1, TypeError, "object"),
]


@pytest.mark.parametrize("cls, y, n_outputs, error, text", BAD_TARGETS,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BAD_TARGETS)])
def test_prepare_targets_errors(cls, y, n_outputs, error, text):
    """Invalid targets raise ValueError/TypeError whose message names the offending value or shape."""
    with pytest.raises(error) as info:
        cls().prepare_targets(y, n_outputs, np.float32)
    assert text in str(info.value)


def test_prepare_targets_valid():
    """Valid targets come back cast once: labels as ints, rows/values in the requested dtype, (N,) -> (N, 1)."""
    labels = nn.SoftmaxCrossEntropy().prepare_targets(np.array([0.0, 2.0]), 3, np.float32)
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels, [0, 2])
    column = nn.SoftmaxCrossEntropy().prepare_targets(np.array([[1], [0]]), 3, np.float32)
    np.testing.assert_array_equal(column, [1, 0])
    rows = nn.SoftmaxCrossEntropy().prepare_targets(np.eye(3)[[1, 0]], 3, np.float32)
    assert rows.dtype == np.float32 and rows.shape == (2, 3)
    flat = nn.MSE().prepare_targets([1, 2, 3], 1, np.float64)
    assert flat.dtype == np.float64 and flat.shape == (3, 1)
    np.testing.assert_array_equal(flat.ravel(), [1, 2, 3])
    bce = nn.BinaryCrossEntropy().prepare_targets(np.array([0, 1, 1]), 1, np.float32)
    assert bce.dtype == np.float32 and bce.shape == (3, 1)


# -- transform ----------------------------------------------------------------------------------------


def test_transform(rng):
    """softmax CE shows probabilities (rows sum to 1), BCE shows sigmoids, MSE an identical copy."""
    z = rng.normal(0, 3, (4, 3))
    before = z.copy()
    probs = nn.SoftmaxCrossEntropy().transform(z)
    np.testing.assert_allclose(probs, sp_softmax(z, axis=1), rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(nn.BinaryCrossEntropy().transform(z), expit(z), rtol=1e-12)
    same = nn.MSE().transform(z)
    np.testing.assert_array_equal(same, z)
    assert not np.shares_memory(same, z)
    np.testing.assert_array_equal(z, before)


# -- targets whose rows do not sum to 1 (class weights, soft targets) -------------------------------------
def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("mass", [0.3, 1.0, 2.5])
def test_softmax_ce_gradient_for_target_rows_of_any_mass(mass, rng):
    """Rows that sum to ``mass`` (a class weight times one-hot, or soft targets): L = -(1/N) sum t log p has
    dL/dz = (p * sum_c t - t) / N, by hand and by float64 central differences."""
    z = rng.standard_normal((5, 4)) * 2
    t = rng.dirichlet(np.ones(4), size=5) * mass
    np.testing.assert_allclose(t.sum(axis=1), mass, rtol=1e-12)
    loss = nn.SoftmaxCrossEntropy()
    value = loss.forward(z, t)
    assert value == pytest.approx(-np.sum(t * np.log(softmax_rows(z))) / 5, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (softmax_rows(z) * mass - t) / 5, rtol=1e-12, atol=1e-15)
    result = nn.check_gradients(nn.SoftmaxCrossEntropy(), z, t)
    assert result.ok, str(result)
    assert result.max_error < 1e-8


def test_softmax_ce_gradient_for_class_weighted_rows_in_one_batch(rng):
    """One batch whose rows sum to 0.3, 1 and 2.5 (weighted one-hot rows, as the classifier's class_weight
    gives): each row's gradient carries its own mass."""
    z = rng.standard_normal((3, 3))
    t = np.array([[0.3, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.5]])
    loss = nn.SoftmaxCrossEntropy()
    loss.forward(z, t)
    np.testing.assert_allclose(loss.backward(), (softmax_rows(z) * [[0.3], [1.0], [2.5]] - t) / 3, rtol=1e-12,
                               atol=1e-15)
    result = nn.check_gradients(nn.SoftmaxCrossEntropy(), z, t)
    assert result.ok, str(result)
    assert result.max_error < 1e-8
