"""Tests for nnlib.metrics: accuracy (labels, one-hot, binary), mse, mae and name lookup."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlib import metrics

PROBS = np.array([[0.7, 0.2, 0.1],   # argmax 0
                  [0.1, 0.3, 0.6],   # argmax 2
                  [0.2, 0.5, 0.3],   # argmax 1
                  [0.3, 0.4, 0.3]])  # argmax 1
LABELS = np.array([0, 2, 2, 1])      # rows 0, 1, 3 right -> 3/4


def test_accuracy_integer_labels():
    """argmax of the outputs vs integer labels: 3 of 4 right."""
    assert metrics.accuracy(LABELS, PROBS) == 0.75


def test_accuracy_label_column():
    """Integer labels given as a column (N, 1), as Keras's sparse accuracy accepts, mean the same as (N,)."""
    assert metrics.accuracy(LABELS.reshape(-1, 1), PROBS) == 0.75


def test_accuracy_one_hot_labels():
    """One-hot rows give the same answer as their labels."""
    assert metrics.accuracy(np.eye(3)[LABELS], PROBS) == 0.75


@pytest.mark.parametrize("y_true", [np.array([0, 1, 0, 1]), np.array([[0.0], [1.0], [0.0], [1.0]])])
def test_accuracy_binary_threshold(y_true):
    """One output: predicted positive iff > 0.5 (0.5 itself is negative); labels (N,) or (N, 1)."""
    y_out = np.array([[0.2], [0.7], [0.51], [0.5]])  # predictions 0, 1, 1, 0 -> right, right, wrong, wrong
    assert metrics.accuracy(y_true, y_out) == 0.5


def test_mse_mae_hand_values():
    """errors 0.5 and -1: mse (0.25 + 1)/2, mae (0.5 + 1)/2; (N,) targets against (N, 1) outputs."""
    y_true, y_out = np.array([1.0, 2.0]), np.array([[1.5], [1.0]])
    assert metrics.mse(y_true, y_out) == pytest.approx(0.625)
    assert metrics.mae(y_true, y_out) == pytest.approx(0.75)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 8), d=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_mse_mae_formulas(n, d, seed):
    """mse and mae are means over all elements of squared / absolute differences."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d)).astype(np.float32)
    diffs = [float(b[i, j]) - a[i, j] for i in range(n) for j in range(d)]
    assert metrics.mse(a, b) == pytest.approx(sum(x * x for x in diffs) / (n * d), rel=1e-12)
    assert metrics.mae(a, b) == pytest.approx(sum(abs(x) for x in diffs) / (n * d), rel=1e-12)


@pytest.mark.parametrize("name, canonical, fn", [
    ("accuracy", "accuracy", metrics.accuracy),
    ("acc", "accuracy", metrics.accuracy),
    ("mse", "mse", metrics.mse),
    ("mean_squared_error", "mse", metrics.mse),
    ("mae", "mae", metrics.mae),
    ("mean_absolute_error", "mae", metrics.mae),
    ("ACC", "accuracy", metrics.accuracy),
])
def test_get_by_name_and_alias(name, canonical, fn):
    """get returns (canonical name, function) for names and aliases, case-insensitively."""
    assert metrics.get(name) == (canonical, fn)


def test_get_callable_and_errors():
    """A callable passes through with its name; unknown names are ValueError listing names; others TypeError."""
    def f1(y_true, y_out):
        return 0.0

    assert metrics.get(f1) == ("f1", f1)
    with pytest.raises(ValueError) as info:
        metrics.get("precision_at_k")
    assert "accuracy" in str(info.value) and "precision_at_k" in str(info.value)
    with pytest.raises(TypeError):
        metrics.get(3)
