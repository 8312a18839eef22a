"""Element-wise activations: ReLU, LeakyReLU, Sigmoid, Tanh and Linear, forward and backward side by side."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .._validation import check_number
from .base import Layer, activations, elementwise, registry

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Linear"]


class _Activation(Layer):
    """An element-wise function with no parameters."""

    #: human words and symbols for the local derivative (shown by explain tools)
    derivative_text = ""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._check_input(x)
        return self._forward_checked(x)

    def _forward_checked(self, x: np.ndarray) -> np.ndarray:
        """forward() once ``x`` is known to have the right shape (Dense's own output)."""
        # Activations follow their input's float dtype, so a standalone float64 ReLU stays float64.
        y = self._buffer("y", x.shape, x.dtype if x.dtype.kind == "f" else None)
        self._forward(x, y)
        self._x, self._y = x, y
        return y

    def _forward(self, x: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx = self._buffer("dx", grad_out.shape, self._y.dtype)
        self._backward(grad_out, dx)
        return dx

    def _backward(self, g: np.ndarray, dx: np.ndarray) -> None:
        raise NotImplementedError


@registry.register("relu")
@activations.register("relu")
class ReLU(_Activation):
    """Rectified linear unit, ``y = max(x, 0)``."""

    derivative_text = "passes the gradient where the input was > 0, zero elsewhere"

    #: set by Sequential when MaxPooling2D comes next: the pooling applies this ReLU to its 4x smaller
    #: output instead (they commute, gradients included), and this layer passes its input through
    moved_past_pooling = False
    _passed = False

    def forward(self, x, training=False):
        self._passed = self.moved_past_pooling
        if self._passed:
            self._check_input(x)
            return x
        return super().forward(x, training)

    def backward(self, grad_out):
        return grad_out if self._passed else super().backward(grad_out)

    # y = x * [x > 0]  =>  dx = g * [x > 0]; the mask is made once, in forward, as 0.0/1.0
    # in y's dtype (measured: a same-dtype multiply takes half the time of one by a bool
    # mask, and np.maximum is slower than the comparison and the multiply together)
    def _forward(self, x, y):
        self._mask = np.greater(x, 0, out=self._buffer("mask", x.shape, y.dtype))
        np.multiply(x, self._mask, out=y)

    def _backward(self, g, dx):
        np.multiply(g, self._mask, out=dx)

    def symbolic(self, sp, x):
        return x if self.moved_past_pooling else elementwise(x, lambda v: sp.Max(v, 0))


@registry.register("leaky_relu")
@activations.register("leaky_relu")
class LeakyReLU(_Activation):
    """Leaky ReLU, ``y = x`` for ``x > 0`` and ``alpha * x`` otherwise.

    Parameters
    ----------
    alpha : float, default 0.01
        Slope for negative inputs, in ``[0, 1)`` (PyTorch's default ``negative_slope``).
    """

    derivative_text = "passes the gradient where the input was > 0, scales it by alpha elsewhere"

    def __init__(self, alpha: float = 0.01, name: str | None = None,
                 input_shape: int | tuple[int, ...] | None = None) -> None:
        super().__init__(name, input_shape)
        self.alpha = check_number(alpha, "alpha", 0.0, 1.0)

    # y = x if x > 0 else alpha x  =>  dx = g * (1 if x > 0 else alpha)
    def _forward(self, x, y):
        np.multiply(x, np.where(x > 0, 1.0, self.alpha).astype(y.dtype, copy=False), out=y)

    def _backward(self, g, dx):
        np.multiply(g, np.where(self._x > 0, 1.0, self.alpha).astype(dx.dtype, copy=False), out=dx)

    def symbolic(self, sp, x):
        return elementwise(x, lambda v: sp.Piecewise((v, v > 0), (self.alpha * v, True)))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@registry.register("sigmoid")
@activations.register("sigmoid")
class Sigmoid(_Activation):
    """Logistic sigmoid, ``y = 1 / (1 + exp(-x))``."""

    derivative_text = "multiplies the gradient by y (1 - y), at most 1/4"

    # y = 1 / (1 + e^-x)  =>  dx = g * y * (1 - y)
    def _forward(self, x, y):
        F.sigmoid(x, out=y)

    def _backward(self, g, dx):
        np.subtract(1.0, self._y, out=dx)
        dx *= self._y
        dx *= g

    def symbolic(self, sp, x):
        return elementwise(x, lambda v: 1 / (1 + sp.exp(-v)))


@registry.register("tanh")
@activations.register("tanh")
class Tanh(_Activation):
    """Hyperbolic tangent, ``y = tanh(x)``."""

    derivative_text = "multiplies the gradient by 1 - y^2, at most 1"

    # y = tanh x  =>  dx = g * (1 - y^2)
    def _forward(self, x, y):
        np.tanh(x, out=y)

    def _backward(self, g, dx):
        np.multiply(self._y, self._y, out=dx)
        np.subtract(1.0, dx, out=dx)
        dx *= g

    def symbolic(self, sp, x):
        return elementwise(x, sp.tanh)


@registry.register("linear")
@activations.register("linear")
class Linear(_Activation):
    """Identity, ``y = x`` (what ``activation=None`` means)."""

    derivative_text = "passes the gradient through unchanged"

    # y = x  =>  dx = g
    def _forward(self, x, y):
        np.copyto(y, x)

    def _backward(self, g, dx):
        np.copyto(dx, g)

    def symbolic(self, sp, x):
        return x
