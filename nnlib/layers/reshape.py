"""Flatten and Reshape: new per-sample shapes for the same numbers, in C (row-major) order."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import check_shape
from .base import Layer, registry

__all__ = ["Flatten", "Reshape"]


@registry.register("flatten")
class Flatten(Layer):
    """``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)``, in row-major order.

    For channels-last images ``(N, H, W, C)`` the features come in ``(H, W, C)`` order,
    as Keras's ``Flatten`` with ``data_format="channels_last"``, so a Dense layer after
    it has the same weight layout as Keras's. The output is a view of the input when
    the input is contiguous (the layers before it hand over contiguous buffers).
    """

    derivative_text = "reshapes the gradient back to the input's shape; nothing else"

    def compute_output_shape(self, input_shape):
        return (math.prod(super().compute_output_shape(input_shape)),)

    # y = reshape(x, (N, -1))  =>  dx = reshape(g, x.shape)
    def forward(self, x, training=False):
        self._check_input(x)
        self._in_shape = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: a data-parallel slice may have 0 rows

    def backward(self, grad_out):
        return grad_out.reshape(self._in_shape)

    def symbolic(self, sp, x):
        return x.reshape(x.shape[0], -1)


@registry.register("reshape")
class Reshape(Layer):
    """Samples reshaped to ``target_shape``, in row-major order (Keras's ``Reshape``).

    Parameters
    ----------
    target_shape : tuple of int
        The per-sample output shape, without the batch axis: ``Reshape((28, 28, 1))``
        turns ``(N, 784)`` into ``(N, 28, 28, 1)``. One entry may be -1, inferred from
        the others (as Keras and NumPy).
    name, input_shape : optional
        As for every layer.
    """

    derivative_text = "reshapes the gradient back to the input's shape; nothing else"

    def __init__(self, target_shape: tuple[int, ...], name: str | None = None,
                 input_shape: int | tuple[int, ...] | None = None) -> None:
        super().__init__(name, input_shape)
        if not isinstance(target_shape, (tuple, list)):
            raise TypeError(f"Reshape: target_shape must be a tuple of ints, got {target_shape!r}")
        target = list(target_shape)
        if not target:
            raise ValueError("Reshape: target_shape must be a non-empty tuple of ints, got ()")
        if target.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape may hold at most one -1, got {tuple(target)}")
        known = [v for v in target if not (isinstance(v, int) and not isinstance(v, bool) and v == -1)]
        check_shape(known or [1], "Reshape: target_shape")  # the others must be positive ints
        self.target_shape = tuple(int(v) for v in target)

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        size = math.prod(shape)
        known = math.prod(v for v in self.target_shape if v != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"{self!r} cannot reshape samples of shape {shape} ({size} numbers) into "
                                 f"{self.target_shape}: {size} is not a multiple of {known}")
            return tuple(size // known if v == -1 else v for v in self.target_shape)
        if known != size:
            raise ValueError(f"{self!r} cannot reshape samples of shape {shape} ({size} numbers) into "
                             f"{self.target_shape} ({known} numbers)")
        return self.target_shape

    # y = reshape(x, (N, *target_shape))  =>  dx = reshape(g, x.shape)
    def forward(self, x, training=False):
        self._check_input(x)
        out_shape = self.output_shape or self.compute_output_shape(x.shape[1:])
        self._in_shape = x.shape
        return x.reshape(x.shape[0], *out_shape)

    def backward(self, grad_out):
        return grad_out.reshape(self._in_shape)

    def symbolic(self, sp: Any, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], *self.compute_output_shape(x.shape[1:]))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}

    def __repr__(self) -> str:
        return f"Reshape({self.target_shape}{', name=' + repr(self.name) if self.name else ''})"
