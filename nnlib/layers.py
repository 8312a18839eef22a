"""Layers: Dense and element-wise activations, each with forward and backward side by side.

Every layer maps a batch ``x`` of shape ``(N, D_in)`` to ``y`` of shape ``(N, D_out)``.
``forward`` caches what ``backward`` needs (references, never copies of its input);
``backward(g)`` takes ``g = dL/dy`` and returns ``dL/dx``, overwriting the ``grad`` of
the layer's parameters. Outputs are written into buffers the layer owns and reuses
for the next call with the same shape, so the array returned by ``forward`` or
``backward`` is only valid until the layer's next call: copy it to keep it (the
model's ``predict`` does). A layer never writes into an array it was given.

Each layer also has a ``symbolic`` form, the same function written with sympy,
which :func:`nnlib.gradcheck.check_symbolic` differentiates to check ``backward``.
Layers with non-trainable state expose it through ``get_state``/``set_state`` so model
files keep it (see :mod:`nnlib.training_layers` for Dropout and BatchNormalization).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from . import initializers
from ._buffers import cached_buffer, cached_ones
from .data import check_positive_int
from .parameter import Parameter
from .registry import Registry

__all__ = ["Layer", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Linear", "registry", "activations", "get"]


class Layer:
    """Base class of all layers.

    Subclasses implement :meth:`build` (when they own parameters),
    :meth:`forward`, :meth:`backward` and :meth:`get_config`.

    Attributes
    ----------
    name : str or None
        Unique within a model (``dense_0``, ``relu_1``, ...); set by ``Sequential``.
    input_dim, output_dim : int or None
        Known once built.
    needs_input_grad : bool
        False for the first trainable layer of a model: nobody uses dL/dx there,
        so ``backward`` skips that product and returns None.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self.name = name
        self.input_dim: int | None = None
        self.output_dim: int | None = None
        self.dtype: np.dtype = np.dtype(np.float32)
        self.needs_input_grad = True
        self._buffers: dict = {}

    # -- construction -------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.output_dim is not None

    def build(self, input_dim: int, rng: np.random.Generator, dtype: Any = np.float32) -> int:
        """Create parameters for inputs of width ``input_dim``; return the output width."""
        self.input_dim = self.output_dim = int(input_dim)
        self.dtype = np.dtype(dtype)
        return self.output_dim

    def output_dim_for(self, input_dim: int) -> int:
        """The output width for inputs of width ``input_dim``, without building."""
        return input_dim

    def parameters(self) -> list[Parameter]:
        """Trainable parameters, in a fixed order (empty for activations)."""
        return []

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equal, unbuilt layer."""
        return {"name": self.name}

    def get_state(self) -> dict[str, np.ndarray]:
        """Non-trainable state a model file must keep besides the parameters (copies).

        Empty for most layers; BatchNormalization's running statistics, Dropout's
        generator position. Valid once built.
        """
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned (the layer must be built).

        Raises
        ------
        ValueError
            If the keys or shapes differ from those of :meth:`get_state`.
        """
        current = self.get_state()
        state = dict(state)
        if set(state) != set(current):
            raise ValueError(f"{self!r}.set_state expected keys {sorted(current)}, got {sorted(state)}")
        for key, value in current.items():
            arr = np.asarray(state[key])
            if arr.shape != value.shape:
                raise ValueError(f"{self!r}.set_state: {key} must have shape {value.shape}, got {arr.shape}")
        self._set_state({k: np.asarray(v) for k, v in state.items()})

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Write validated state (same keys and shapes as :meth:`get_state`)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    # -- computation --------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def symbolic(self, sp: Any, x: Any, *params: Any) -> Any:
        """The layer's function on a sympy Matrix ``x`` of shape (N, D_in)."""
        raise NotImplementedError(f"{type(self).__name__} has no symbolic form")

    # -- helpers ------------------------------------------------------------------
    def _buffer(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        """A layer-owned array for ``key`` and ``shape`` (default dtype: the layer's), reused across calls."""
        return cached_buffer(self._buffers, key, shape, dtype or self.dtype)

    def _check_input(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.ndim != 2 or (
            self.input_dim is not None and x.shape[1] != self.input_dim
        ):
            shape = getattr(x, "shape", type(x).__name__)
            expected = f"(N, {self.input_dim})" if self.input_dim is not None else "(N, D)"
            raise ValueError(f"{self!r} expected input of shape {expected}, got {shape}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or ''})"

    def __getstate__(self) -> dict[str, Any]:
        # Buffers are caches: never pickle or deep-copy them.
        state = self.__dict__.copy()
        state["_buffers"] = {}
        return state


registry = Registry("layer", base=Layer)
activations = Registry("activation", base=Layer)


class _Activation(Layer):
    """An element-wise function with no parameters."""

    #: human words and symbols for the local derivative (shown by explain tools)
    derivative_text = ""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._check_input(x)
        return self._forward_checked(x)

    def _forward_checked(self, x: np.ndarray) -> np.ndarray:
        """forward() once ``x`` is known to be a 2-D array of the right width (Dense's own output)."""
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

    # y = x * [x > 0]  =>  dx = g * [x > 0]; the mask is made once, in forward, as 0.0/1.0
    # in y's dtype (measured: a same-dtype multiply takes half the time of one by a bool
    # mask, and np.maximum is slower than the comparison and the multiply together)
    def _forward(self, x, y):
        self._mask = np.greater(x, 0, out=self._buffer("mask", x.shape, y.dtype))
        np.multiply(x, self._mask, out=y)

    def _backward(self, g, dx):
        np.multiply(g, self._mask, out=dx)

    def symbolic(self, sp, x):
        return x.applyfunc(lambda v: sp.Max(v, 0))


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

    def __init__(self, alpha: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < 1:
            raise ValueError(f"alpha must be a number in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    # y = x if x > 0 else alpha x  =>  dx = g * (1 if x > 0 else alpha)
    def _forward(self, x, y):
        np.multiply(x, np.where(x > 0, 1.0, self.alpha).astype(y.dtype, copy=False), out=y)

    def _backward(self, g, dx):
        np.multiply(g, np.where(self._x > 0, 1.0, self.alpha).astype(dx.dtype, copy=False), out=dx)

    def symbolic(self, sp, x):
        return x.applyfunc(lambda v: sp.Piecewise((v, v > 0), (self.alpha * v, True)))

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
        return x.applyfunc(lambda v: 1 / (1 + sp.exp(-v)))


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
        return x.applyfunc(sp.tanh)


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


@registry.register("dense")
class Dense(Layer):
    """Fully connected layer, ``y = activation(x @ weight + bias)``.

    Parameters
    ----------
    units : int
        D_out, the number of outputs.
    input_dim : int, optional
        D_in. When given on a model's first layer, the model is built at once.
    activation : str, Layer or None
        Applied after the affine map, as in Keras's ``Dense(64, activation="relu")``;
        its backward runs first, then the affine one. None means linear.
    weight_init : str, Initializer or None
        None chooses by activation: ``he_normal`` when this layer's activation, or
        the layer right after it in a model, is ReLU or LeakyReLU; otherwise
        ``glorot_uniform`` (Keras's default).
    bias_init : str or Initializer, default "zeros"

    Attributes
    ----------
    weight : Parameter of shape (D_in, D_out)
    bias : Parameter of shape (D_out,)
    """

    derivative_text = "dW = x^T g, db = sum over the batch of g, dx = g W^T"

    def __init__(
        self,
        units: int,
        input_dim: int | None = None,
        activation: str | Layer | None = None,
        weight_init: Any = None,
        bias_init: Any = "zeros",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.units = check_positive_int(units, "units")
        self.declared_input_dim = None if input_dim is None else check_positive_int(input_dim, "input_dim")
        self.activation = None if activation is None else activations.get(activation)
        self.weight_init = None if weight_init is None else initializers.get(weight_init)
        self.bias_init = initializers.get(bias_init)
        #: set by Sequential: the activation that follows this layer, for the default init
        self.next_activation: Layer | None = None
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def _default_init(self) -> initializers.Initializer:
        follower = self.activation or self.next_activation
        if isinstance(follower, (ReLU, LeakyReLU)):
            return initializers.HeNormal()
        return initializers.GlorotUniform()

    def output_dim_for(self, input_dim):
        if self.declared_input_dim is not None and input_dim != self.declared_input_dim:
            raise ValueError(
                f"{self!r} was declared with input_dim={self.declared_input_dim}, got inputs of width {input_dim}"
            )
        return self.units

    def build(self, input_dim, rng, dtype=np.float32):
        input_dim = check_positive_int(input_dim, "input_dim")
        self.output_dim_for(input_dim)
        self.dtype = np.dtype(dtype)
        init = self.weight_init or self._default_init()
        prefix = f"{self.name}/" if self.name else ""
        self.weight = Parameter(
            np.ascontiguousarray(init((input_dim, self.units), rng, self.dtype), dtype=self.dtype),
            prefix + "weight",
        )
        self.bias = Parameter(
            np.ascontiguousarray(self.bias_init((self.units,), rng, self.dtype), dtype=self.dtype),
            prefix + "bias",
        )
        self.input_dim, self.output_dim = input_dim, self.units
        if self.activation is not None:
            self.activation.build(self.units, rng, self.dtype)
        return self.units

    def parameters(self):
        return [] if self.weight is None else [self.weight, self.bias]

    # y = x W + b  =>  dW = x^T g,  db = sum_n g,  dx = g W^T
    def forward(self, x, training=False):
        if not self.built:
            raise RuntimeError(f"{self!r} is not built: call build(input_dim, rng) or use it in a model")
        self._check_input(x)
        y = np.matmul(x, self.weight.value, out=self._buffer("y", (x.shape[0], self.units)))
        y += self.bias.value
        self._x = x
        act = self.activation
        if isinstance(act, _Activation):  # y is this layer's own (N, units) array: no second check
            y = act._forward_checked(y)
        elif act is not None:
            y = act.forward(y, training)
        return y

    def backward(self, grad_out):
        if self.activation is not None:
            grad_out = self.activation.backward(grad_out)
        np.matmul(self._x.T, grad_out, out=self.weight.grad)
        # db = 1^T g: a matrix-vector product, measured 3x faster than np.sum(axis=0)
        np.matmul(cached_ones(self._buffers, grad_out.shape[0], self.dtype), grad_out, out=self.bias.grad)
        if not self.needs_input_grad:
            return None
        return np.matmul(grad_out, self.weight.value.T, out=self._buffer("dx", self._x.shape))

    def symbolic(self, sp, x, weight, bias):
        z = x * weight + sp.ones(x.shape[0], 1) * bias
        return z if self.activation is None else self.activation.symbolic(sp, z)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "input_dim": self.declared_input_dim,
            "activation": None if self.activation is None else {
                "name": self.activation.registered_name,
                "config": {k: v for k, v in self.activation.get_config().items() if k != "name"}},
            "weight_init": None if self.weight_init is None else {
                "name": self.weight_init.registered_name, "config": self.weight_init.get_config()},
            "bias_init": {"name": self.bias_init.registered_name, "config": self.bias_init.get_config()},
        }

    def __repr__(self) -> str:
        act = "" if self.activation is None else f", activation={self.activation.registered_name!r}"
        return f"Dense({self.units}{act}{', name=' + repr(self.name) if self.name else ''})"


def get(identifier: Any) -> Layer:
    """Resolve a layer name, class, instance or config dict."""
    return registry.get(identifier)
