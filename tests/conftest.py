"""Shared fixtures for the nnlib unit tests: a seeded generator, inputs clear of the ReLU kink, the
optimizers' two-step and packed-vs-loose drivers, and the digits the GradientMonitor, explain and plot tests use.
(Shared builders that are not fixtures live in the helper modules beside it: layer_cases.py, model_files.py,
idx_files.py, training_helpers.py.)"""

import os

# scikit-learn's estimator checks exercise array-API inputs only when SciPy's array API
# support is switched on, which must happen before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnlib.parameter import Parameter, pack  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test, so tests are independent and repeatable."""
    return np.random.default_rng(12345)


@pytest.fixture
def away_from_zero():
    """``draw(rng, shape)`` -> float64 values in ``±[0.2, 1.5]``, clear of the ReLU kink at 0."""

    def draw(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.2, high: float = 1.5) -> np.ndarray:
        return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)

    return draw


@pytest.fixture
def two_scalar_steps():
    """``run(optimizer, packed) -> (p1, p2, untouched)``: two steps on a scalar p = 1 with
    gradients 0.5 then -0.25, beside a parameter (value 0) whose gradient is always 0;
    ``packed`` puts both in one flat buffer (the optimizers' fast path)."""

    def run(optimizer, packed: bool) -> tuple[float, float, float]:
        params = [Parameter(np.array([1.0]), "p"), Parameter(np.array([0.0]), "unused")]
        if packed:
            pack(params, np.dtype(np.float64))
        values = []
        for g in (0.5, -0.25):
            params[0].grad[...] = g
            params[1].grad[...] = 0.0
            optimizer.step(params)
            values.append(float(params[0].value[0]))
        return values[0], values[1], float(params[1].value[0])

    return run


@pytest.fixture
def packed_matches_loose():
    """``check(run, make)``: ``run(optimizer, packed, steps)`` two steps on the packed (flat
    buffer) and the loose (per-parameter) paths agree to the last bit: the same passes run on
    one buffer or on each parameter."""

    def check(run, make) -> None:
        for a, b in zip(run(make(), False, 2), run(make(), True, 2)):
            np.testing.assert_array_equal(a, b)

    return check


@pytest.fixture(scope="session")
def digits_600() -> tuple[np.ndarray, np.ndarray]:
    """The first 600 training digits ``(x, y)`` of :func:`nnlib.datasets.load_digits` (float32 in [0, 1], int64),
    loaded once: the data of the GradientMonitor, explain and plot tests."""
    from nnlib.datasets import load_digits

    (x, y), _ = load_digits()
    return x[:600], y[:600]
