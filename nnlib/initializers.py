"""Weight initializers: ``init(shape, rng, dtype) -> ndarray``.

Fan-in and fan-out are the first and last entries of a 2-D Dense weight shape
``(D_in, D_out)``; for a convolution kernel ``(KH, KW, C_in, C_out)`` they are
``KH KW C_in`` and ``KH KW C_out`` (Keras's and PyTorch's rule: the receptive field
times the channels). Normal variants draw from an untruncated normal, as
PyTorch's ``kaiming_normal_`` / ``xavier_normal_`` do (Keras truncates).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .registry import Registry

__all__ = [
    "Initializer",
    "HeNormal",
    "HeUniform",
    "GlorotNormal",
    "GlorotUniform",
    "LecunNormal",
    "Zeros",
    "Ones",
    "Normal",
    "registry",
    "get",
]


class Initializer:
    """Base class: a callable ``(shape, rng, dtype) -> ndarray``."""

    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator, dtype: Any) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


registry = Registry("initializer", base=Initializer)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return receptive_field * shape[-2], receptive_field * shape[-1]


def _normal(shape, rng, dtype, std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(dtype, copy=False)


def _uniform(shape, rng, dtype, limit: float) -> np.ndarray:
    return rng.uniform(-limit, limit, size=shape).astype(dtype, copy=False)


@registry.register("he_normal")
class HeNormal(Initializer):
    """Normal with std ``sqrt(2 / fan_in)``: keeps ReLU activations' variance constant."""

    def __call__(self, shape, rng, dtype):
        return _normal(shape, rng, dtype, math.sqrt(2.0 / _fans(shape)[0]))


@registry.register("he_uniform")
class HeUniform(Initializer):
    """Uniform on ``[-l, l]`` with ``l = sqrt(6 / fan_in)``."""

    def __call__(self, shape, rng, dtype):
        return _uniform(shape, rng, dtype, math.sqrt(6.0 / _fans(shape)[0]))


@registry.register("glorot_normal", "xavier_normal")
class GlorotNormal(Initializer):
    """Normal with std ``sqrt(2 / (fan_in + fan_out))``: for tanh and sigmoid."""

    def __call__(self, shape, rng, dtype):
        fan_in, fan_out = _fans(shape)
        return _normal(shape, rng, dtype, math.sqrt(2.0 / (fan_in + fan_out)))


@registry.register("glorot_uniform", "xavier_uniform")
class GlorotUniform(Initializer):
    """Uniform on ``[-l, l]`` with ``l = sqrt(6 / (fan_in + fan_out))`` (Keras's default)."""

    def __call__(self, shape, rng, dtype):
        fan_in, fan_out = _fans(shape)
        return _uniform(shape, rng, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


@registry.register("lecun_normal")
class LecunNormal(Initializer):
    """Normal with std ``sqrt(1 / fan_in)``."""

    def __call__(self, shape, rng, dtype):
        return _normal(shape, rng, dtype, math.sqrt(1.0 / _fans(shape)[0]))


@registry.register("zeros")
class Zeros(Initializer):
    """All zeros (the usual bias initializer)."""

    def __call__(self, shape, rng, dtype):
        return np.zeros(shape, dtype=dtype)


@registry.register("ones")
class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, rng, dtype):
        return np.ones(shape, dtype=dtype)


@registry.register("normal")
class Normal(Initializer):
    """Normal with mean 0 and a fixed ``std`` (default 0.05, as Keras's RandomNormal)."""

    def __init__(self, std: float = 0.05) -> None:
        if not isinstance(std, (int, float)) or isinstance(std, bool) or not std > 0:
            raise ValueError(f"std must be a positive number, got {std!r}")
        self.std = float(std)

    def __call__(self, shape, rng, dtype):
        return _normal(shape, rng, dtype, self.std)

    def get_config(self) -> dict[str, Any]:
        return {"std": self.std}


def get(identifier: Any) -> Initializer:
    """Resolve a name, class, instance or config dict to an :class:`Initializer`."""
    return registry.get(identifier)
