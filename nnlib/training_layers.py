"""Layers that behave differently in training and at inference: Dropout and BatchNormalization.

Both follow the contract of :mod:`nnlib.layers` (forward and backward side by side,
layer-owned output buffers, a sympy ``symbolic`` form) and keep their non-trainable
state (Dropout's generator, BatchNormalization's running statistics) in
``get_state``/``set_state``, which model files save.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .data import check_positive_int
from .layers import Layer, registry
from .parameter import Parameter

__all__ = ["Dropout", "BatchNormalization"]


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
        out = super().build(check_positive_int(input_dim, "input_dim"), rng, dtype)
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
        d = check_positive_int(input_dim, "input_dim")
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
