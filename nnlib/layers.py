"""Layers: Dense, element-wise activations, Dropout and BatchNormalization, each with
forward and backward side by side.

Every layer maps a batch ``x`` of shape ``(N, D_in)`` to ``y`` of shape ``(N, D_out)``.
``forward`` caches what ``backward`` needs (references, never copies of its input);
``backward(g)`` takes ``g = dL/dy`` and returns ``dL/dx``, overwriting the ``grad`` of
the layer's parameters. Outputs are written into buffers the layer owns and reuses
for the next call with the same shape, so the array returned by ``forward`` or
``backward`` is only valid until the layer's next call: copy it to keep it (the
model's ``predict`` does). A layer never writes into an array it was given.

Each layer also has a ``symbolic`` form, the same function written with sympy,
which :func:`nnlib.gradcheck.check_symbolic` differentiates to check ``backward``.
Layers with non-trainable state (BatchNormalization's running statistics, Dropout's
generator) expose it through ``get_state``/``set_state`` so model files keep it.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import numpy as np

from . import functional as F
from . import initializers
from ._buffers import cached_buffer
from .parameter import Parameter
from .registry import Registry

__all__ = ["Layer", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Linear", "Dropout", "BatchNormalization",
           "registry", "activations", "get"]


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

    # y = max(x, 0)  =>  dx = g * [x > 0]   (y > 0 exactly where x > 0)
    def _forward(self, x, y):
        F.relu(x, out=y)

    def _backward(self, g, dx):
        np.multiply(g, self._y > 0, out=dx)

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


def _check_units(value: Any, what: str) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be a positive int, got {value!r}") from None
    if isinstance(value, bool) or n <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return n


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
        self.units = _check_units(units, "units")
        self.declared_input_dim = None if input_dim is None else _check_units(input_dim, "input_dim")
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
        input_dim = _check_units(input_dim, "input_dim")
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
        if self.activation is not None:
            y = self.activation.forward(y, training)
        return y

    def backward(self, grad_out):
        if self.activation is not None:
            grad_out = self.activation.backward(grad_out)
        np.matmul(self._x.T, grad_out, out=self.weight.grad)
        np.sum(grad_out, axis=0, out=self.bias.grad)
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


def _child_generator(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator derived from ``rng`` without advancing its stream.

    A Dropout layer therefore does not shift the initial weights of the layers built
    after it: a model with and without dropout starts from the same weights.
    """
    try:
        return rng.spawn(1)[0]
    except (AttributeError, TypeError):  # numpy < 1.25, or a generator without a SeedSequence
        return np.random.default_rng(int(rng.integers(2**63)))


def _check_fraction(value: Any, what: str, closed_high: bool = False) -> float:
    ok_type = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    v = float(value) if ok_type else float("nan")
    if not (ok_type and 0 <= v and (v <= 1 if closed_high else v < 1)):
        raise ValueError(f"{what} must be a number in [0, 1{']' if closed_high else ')'}, got {value!r}")
    return v


@registry.register("dropout")
class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate`` and
    scale the kept ones by ``1 / (1 - rate)``; at inference, the identity.

    The scaling keeps every unit's expected value, so nothing changes at
    inference (as Keras and PyTorch). The masks come from a ``numpy.random.Generator``
    derived at :meth:`build` from the generator it is given (in a model, the one
    seeded by the model's ``seed``), so a seed fixes every mask; deriving it does
    not advance that generator, so the other layers' initial weights are the same
    with or without dropout.

    Parameters
    ----------
    rate : float in [0, 1), default 0.5
        Probability of dropping a unit (Keras's ``rate``, PyTorch's ``p``).
    name : str, optional
    """

    derivative_text = ("passes the gradient where the unit was kept, times 1/(1 - rate), and zero where it was "
                       "dropped: dx = g * mask (the forward pass's mask)")

    def __init__(self, rate: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        self.rate = _check_fraction(rate, "rate")
        self._rng: np.random.Generator | None = None
        self._mask: np.ndarray | None = None

    def build(self, input_dim, rng, dtype=np.float32):
        out = super().build(_check_units(input_dim, "input_dim"), rng, dtype)
        self._rng = _child_generator(rng)
        return out

    def _draw_mask(self, mask: np.ndarray) -> None:
        """Fill ``mask`` with 0 (dropped) or ``1 / (1 - rate)`` (kept), from the layer's generator."""
        self._rng.random(out=mask, dtype=mask.dtype)
        keep = mask >= self.rate  # P(keep) = 1 - rate
        np.multiply(keep, 1.0 / (1.0 - self.rate), out=mask)

    # training: y = x * m, m = [u >= rate] / (1 - rate)  =>  dx = g * m;   inference: y = x  =>  dx = g
    def forward(self, x, training=False):
        self._check_input(x)
        y = self._buffer("y", x.shape, x.dtype if x.dtype.kind == "f" else None)
        self._mask = None
        if not training or self.rate == 0.0:
            np.copyto(y, x)
            return y
        if self._rng is None:
            raise RuntimeError(f"{self!r} is not built: call build(input_dim, rng) or use it in a model")
        mask = self._buffer("mask", x.shape, y.dtype)
        self._draw_mask(mask)
        np.multiply(x, mask, out=y)
        self._mask = mask
        return y

    def backward(self, grad_out):
        dx = self._buffer("dx", grad_out.shape, grad_out.dtype)
        if self._mask is None:
            np.copyto(dx, grad_out)
        else:
            np.multiply(grad_out, self._mask, out=dx)
        return dx

    def symbolic(self, sp, x):
        """The training-mode function with the mask the next training forward pass will draw
        (drawn from a copy of the generator, which is not advanced)."""
        if self.rate == 0.0 or self._rng is None:
            return x
        saved = self._rng
        self._rng = copy.deepcopy(saved)
        try:
            mask = np.empty(x.shape, dtype=np.float64)
            self._draw_mask(mask)
        finally:
            self._rng = saved
        return sp.Matrix(x.rows, x.cols, lambda i, j: x[i, j] * float(mask[i, j]))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

    def get_state(self):
        """``{"rng_state": uint64 array of shape (6,)}``: the mask generator's position
        (PCG64 state and increment as low/high words, then ``has_uint32``, ``uinteger``),
        so a resumed run draws the same masks. Empty before :meth:`build`."""
        if self._rng is None:
            return {}
        st = self._rng.bit_generator.state
        mask64 = (1 << 64) - 1
        words = [st["state"]["state"] & mask64, st["state"]["state"] >> 64,
                 st["state"]["inc"] & mask64, st["state"]["inc"] >> 64, st["has_uint32"], st["uinteger"]]
        return {"rng_state": np.array(words, dtype=np.uint64)}

    def _set_state(self, state):
        raw = np.asarray(state["rng_state"])
        if raw.dtype.kind not in "ui" or (raw < 0).any():
            raise ValueError(f"{self!r}.set_state: rng_state must hold unsigned integers, got {raw.dtype}")
        w = [int(v) for v in raw.astype(np.uint64)]
        if w[2] % 2 == 0 or w[4] not in (0, 1) or w[5] >= 2**32:
            raise ValueError(f"{self!r}.set_state: rng_state is not a PCG64 generator state")
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64", "state": {"state": w[0] | (w[1] << 64), "inc": w[2] | (w[3] << 64)},
            "has_uint32": w[4], "uinteger": w[5]}

    def __repr__(self) -> str:
        return f"Dropout({self.rate:g}{', name=' + repr(self.name) if self.name else ''})"


@registry.register("batch_normalization", "batch_norm")
class BatchNormalization(Layer):
    """Batch normalization (Ioffe & Szegedy) over the batch axis, Keras's conventions.

    Training: with the batch mean ``mu`` and biased variance ``var`` of each feature,
    ``x_hat = (x - mu) / sqrt(var + eps)`` and ``y = gamma * x_hat + beta``; the
    running statistics move as ``running = momentum * running + (1 - momentum) * batch``
    (Keras's form and default, momentum=0.99; PyTorch writes the same rule with
    ``1 - momentum`` = 0.1 and keeps the unbiased variance). Inference: the same with
    ``moving_mean`` and ``moving_variance`` in place of the batch statistics.

    Parameters
    ----------
    momentum : float in [0, 1), default 0.99
        Weight of the old running statistics (Keras's meaning and default).
    eps : float > 0, default 1e-3
        Added to the variance (Keras's default; PyTorch uses 1e-5).
    name : str, optional

    Attributes
    ----------
    gamma : Parameter of shape (D,)
        Learnable scale, initialized to ones.
    beta : Parameter of shape (D,)
        Learnable shift, initialized to zeros.
    moving_mean, moving_variance : ndarray of shape (D,)
        Running statistics (zeros and ones at first); non-trainable state, see
        :meth:`get_state`.
    """

    derivative_text = ("normalizes with the batch mean and variance, so the gradient handed left loses its batch "
                       "mean and its component along x_hat: dx = gamma/sigma * (g - mean_n g - x_hat mean_n(g x_hat)); "
                       "dgamma = sum_n g x_hat, dbeta = sum_n g")

    def __init__(self, momentum: float = 0.99, eps: float = 1e-3, name: str | None = None) -> None:
        super().__init__(name)
        self.momentum = _check_fraction(momentum, "momentum")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not (
                np.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        self.eps = float(eps)
        self.gamma: Parameter | None = None
        self.beta: Parameter | None = None
        self.moving_mean: np.ndarray | None = None
        self.moving_variance: np.ndarray | None = None

    def build(self, input_dim, rng, dtype=np.float32):
        d = _check_units(input_dim, "input_dim")
        super().build(d, rng, dtype)
        prefix = f"{self.name}/" if self.name else ""
        self.gamma = Parameter(np.ones(d, dtype=self.dtype), prefix + "gamma")
        self.beta = Parameter(np.zeros(d, dtype=self.dtype), prefix + "beta")
        self.moving_mean = np.zeros(d, dtype=self.dtype)
        self.moving_variance = np.ones(d, dtype=self.dtype)
        return d

    def parameters(self):
        return [] if self.gamma is None else [self.gamma, self.beta]

    # x_hat = (x - mu) / sqrt(var + eps), y = gamma x_hat + beta, mu and var over the batch
    #   =>  dgamma = sum_n g x_hat,  dbeta = sum_n g,
    #       dx = gamma / sqrt(var + eps) * (g - mean_n g - x_hat * mean_n(g x_hat))   (training)
    #       dx = gamma / sqrt(moving_variance + eps) * g                               (inference)
    def forward(self, x, training=False):
        if not self.built or self.gamma is None:
            raise RuntimeError(f"{self!r} is not built: call build(input_dim, rng) or use it in a model")
        self._check_input(x)
        n = x.shape[0]
        xhat = self._buffer("x_hat", x.shape)
        if training:
            mean = x.mean(axis=0, dtype=self.dtype)
            np.subtract(x, mean, out=xhat)
            var = np.einsum("nd,nd->d", xhat, xhat) / n
            self.moving_mean *= self.momentum
            self.moving_mean += (1.0 - self.momentum) * mean
            self.moving_variance *= self.momentum
            self.moving_variance += (1.0 - self.momentum) * var
        else:
            np.subtract(x, self.moving_mean, out=xhat)
            var = self.moving_variance
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= inv_std
        y = np.multiply(xhat, self.gamma.value, out=self._buffer("y", x.shape))
        y += self.beta.value
        self._xhat, self._inv_std, self._training = xhat, inv_std, training
        return y

    def backward(self, grad_out):
        g, xhat = grad_out, self._xhat
        n = g.shape[0]
        np.sum(g, axis=0, out=self.beta.grad)
        np.einsum("nd,nd->d", g, xhat, out=self.gamma.grad)
        if not self.needs_input_grad:
            return None
        dx = self._buffer("dx", g.shape)
        if self._training:
            np.multiply(xhat, self.gamma.grad / n, out=dx)  # x_hat * mean_n(g x_hat)
            dx += self.beta.grad / n  # + mean_n g
            np.subtract(g, dx, out=dx)
            dx *= self.gamma.value * self._inv_std
        else:
            np.multiply(g, self.gamma.value * self._inv_std, out=dx)
        return dx

    def symbolic(self, sp, x, gamma, beta):
        """The training-mode function: batch mean and variance are part of the formula."""
        n, d = x.shape
        out = sp.zeros(n, d)
        for j in range(d):
            mu = sum(x[i, j] for i in range(n)) / n
            var = sum((x[i, j] - mu) ** 2 for i in range(n)) / n
            for i in range(n):
                out[i, j] = gamma[0, j] * (x[i, j] - mu) / sp.sqrt(var + self.eps) + beta[0, j]
        return out

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "eps": self.eps}

    def get_state(self):
        """``{"moving_mean": (D,), "moving_variance": (D,)}`` (copies; empty before build)."""
        if self.moving_mean is None:
            return {}
        return {"moving_mean": self.moving_mean.copy(), "moving_variance": self.moving_variance.copy()}

    def _set_state(self, state):
        for key in ("moving_mean", "moving_variance"):
            value = np.asarray(state[key])
            if value.dtype == bool or value.dtype.kind not in "iuf" or not np.isfinite(value).all():
                raise ValueError(f"{self!r}.set_state: {key} must hold finite numbers")
        if (np.asarray(state["moving_variance"]) < 0).any():
            raise ValueError(f"{self!r}.set_state: moving_variance must be >= 0")
        self.moving_mean[...] = state["moving_mean"]
        self.moving_variance[...] = state["moving_variance"]


def get(identifier: Any) -> Layer:
    """Resolve a layer name, class, instance or config dict."""
    return registry.get(identifier)
