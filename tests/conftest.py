"""Shared fixtures for the nnlib unit tests."""

import os

# scikit-learn's estimator checks exercise array-API inputs only when SciPy's array API
# support is switched on, which must happen before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
