"""Optimizers with PyTorch's arithmetic, so a run can be reproduced step for step.

An optimizer validates its hyperparameters when constructed, never holds the model,
and keeps its state per :class:`~nnlib.parameter.Parameter`, created lazily on the
first :meth:`Optimizer.step`. When the parameters tile one flat buffer (as a
model's do), the state is flat too and each step is a few whole-buffer in-place
passes (BLAS ``axpby``/``axpy``/``rot`` from NumPy's own OpenBLAS where it is found,
see :mod:`nnlib._blas`, else NumPy ufuncs); each Parameter's state entries are views
into it. Momentum and Adam keep that flat state in a *windowed* form between steps
(see :class:`Optimizer`), so that each moment update is one threaded ``axpy``;
the ``state`` attribute always shows the true values.

Weight decay is L2 added to the gradient (``g = grad + wd * p``), as in PyTorch's
SGD, RMSprop and Adam; only :class:`AdamW` decays the weights directly. It is added
in place, so after a step ``Parameter.grad`` holds the gradient the update actually
used.

Every optimizer can clip gradients first (before weight decay), with one of
``clipnorm`` (each parameter's gradient scaled to an L2 norm <= clipnorm, Keras's
``clipnorm``), ``global_clipnorm`` (PyTorch's ``clip_grad_norm_``: with ``total``
the L2 norm of all gradients together, every gradient is multiplied by
``max / (total + 1e-6)`` when that factor is below 1) or ``clipvalue`` (each entry
clipped to ``[-clipvalue, clipvalue]``). Clipping is also done in place, so
``grad`` then holds the clipped gradient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _blas
from ._optimizer_base import (
    FLUSH_EVERY,
    GLOBAL_CLIPNORM_EPS,
    Optimizer,
    _Group,  # noqa: F401  (pickles written before the split name nnlib.optimizers._Group)
    _number,
)
from .parameter import Parameter
from .registry import Registry

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "RMSprop", "AdamW", "registry", "get",
           "FLUSH_EVERY", "GLOBAL_CLIPNORM_EPS"]


registry = Registry("optimizer", base=Optimizer)


@registry.register("sgd")
class SGD(Optimizer):
    """Plain stochastic gradient descent.

    ``g = grad + weight_decay * p;  p -= lr * g``

    Parameters
    ----------
    lr : float, default 0.01
    weight_decay : float, default 0
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, at most one; see :class:`Optimizer`.
    """

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue)

    def _update(self, value, grad, state, scratch):
        _blas.axpy(-self.lr, grad, value, scratch)


@registry.register("momentum")
class Momentum(Optimizer):
    """SGD with (heavy-ball or Nesterov) momentum, PyTorch's form.

    ``g = grad + weight_decay * p;  v = momentum * v + g``, then
    ``p -= lr * v``, or with ``nesterov=True``, ``p -= lr * (g + momentum * v)``.
    ``v`` starts at zero, so the first step is ``v = g`` (as PyTorch, no dampening).

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float in [0, 1), default 0.9
    nesterov : bool, default False
    weight_decay : float, default 0
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, at most one; see :class:`Optimizer`.
    """

    slots = ("velocity",)
    windowed = True

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, *, clipnorm: float | None = None, global_clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue)
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def _update(self, value, grad, state, scratch):
        v, k = state["velocity"], self._window
        if k:  # windowed: v = mu^k V, and mu v + g = mu^k (V + g / mu^k)
            scale = self._window_decays["velocity"] ** k
            _blas.axpy(1.0 / scale, grad, v, scratch)
        else:
            scale = 1.0
            _blas.axpby(1.0, grad, self.momentum, v, scratch)  # v = mu v + g, one pass
        if self.nesterov:  # p -= lr (g + mu v), as two one-pass updates
            _blas.axpy(-self.lr, grad, value, scratch)
            _blas.axpy(-self.lr * self.momentum * scale, v, value, scratch)
        else:
            _blas.axpy(-self.lr * scale, v, value, scratch)

    def _decays(self):
        return {"velocity": self.momentum}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@registry.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba, Algorithm 1), PyTorch's arithmetic.

    At step t::

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    Parameters
    ----------
    lr : float, default 1e-3
    beta1, beta2 : float in [0, 1), defaults 0.9 and 0.999
    eps : float > 0, default 1e-8
        Added after the square root.
    weight_decay : float, default 0
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, at most one; see :class:`Optimizer`.

    Notes
    -----
    To save passes over memory, ``state[p]["m"]`` and ``state[p]["v"]`` hold the
    rescaled sums ``M = m / (1 - beta1)`` and ``V = v / (1 - beta2)``, updated as
    ``M = beta1 M + g`` and ``V = beta2 V + g^2``; all constant factors meet in two
    scalars. :meth:`moments` returns PyTorch's ``(m, v)`` for a parameter.
    """

    slots = ("m", "v")
    windowed = True

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, *, clipnorm: float | None = None, global_clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue)
        self.beta1 = _number(beta1, "beta1", 0.0, 1.0)
        self.beta2 = _number(beta2, "beta2", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, low_open=True)

    def moments(self, p: Parameter) -> tuple[np.ndarray, np.ndarray]:
        """PyTorch's ``exp_avg`` and ``exp_avg_sq`` for ``p`` (copies)."""
        state = self.state[p]
        return state["m"] * (1.0 - self.beta1), state["v"] * (1.0 - self.beta2)

    def _update(self, value, grad, state, scratch):
        m, v, s, k = state["m"], state["v"], scratch, self._window
        t, b1, b2 = self.iterations, float(self.beta1), float(self.beta2)  # float64 scalars even if set to NumPy ones
        if k:  # windowed (see Optimizer): M = b1^k M~, V = b2^k V~, so M = b1 M + g is M~ += g / b1^k
            m_scale, v_scale = self._window_decays["m"] ** k, self._window_decays["v"] ** k
            _blas.axpy(1.0 / m_scale, grad, m, s)
            g2_weight, v_decay = 1.0 / v_scale, 1.0
        else:
            m_scale = v_scale = 1.0
            _blas.axpby(1.0, grad, b1, m, s)  # M = b1 M + g
            g2_weight, v_decay = 1.0, b2
        np.multiply(grad, grad, out=s)
        # V = v_decay V + g2_weight g^2 (s is spent) by BLAS rot rather than axpy: rot also
        # writes s on both BLAS threads, so np.sqrt below takes s's cache lines over instead
        # of first invalidating the other core's read-only copies (measured ~8 us a step)
        _blas.axpby_consuming(g2_weight, s, v_decay, v)
        # p -= lr (1-b1)/bc1 * M / (sqrt((1-b2)/bc2) sqrt(V) + eps) = A * M~ / (sqrt(V~) + e)
        # with c = sqrt((1-b2)/bc2 * v_scale) (Python floats: float32 buffers stay float32)
        c = math.sqrt((1.0 - b2) / (1.0 - b2 ** t) * v_scale)
        step_scale = float(self.lr) * (1.0 - b1) * m_scale / ((1.0 - b1 ** t) * c)
        np.sqrt(v, out=s)
        s += self.eps / c
        np.divide(m, s, out=s)
        _blas.axpy(-step_scale, s, value, s)

    def _decays(self):
        return {"m": self.beta1, "v": self.beta2}

    def get_config(self):
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


@registry.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop, PyTorch's ``torch.optim.RMSprop`` arithmetic.

    At every step::

        g = grad + weight_decay * p
        v = alpha * v + (1 - alpha) * g^2                  (square_avg, starts at 0)
        centered:  a = alpha * a + (1 - alpha) * g          (grad_avg)
                   d = sqrt(v - a^2) + eps
        else:      d = sqrt(v) + eps
        momentum > 0:  buf = momentum * buf + g / d;  p -= lr * buf
        else:          p -= lr * g / d

    ``eps`` is added after the square root (as PyTorch; Keras adds it inside).

    Parameters
    ----------
    lr : float, default 0.01
        PyTorch's default.
    alpha : float in [0, 1), default 0.99
        Decay of the running average of squared gradients (Keras's ``rho=0.9``).
    eps : float > 0, default 1e-8
    momentum : float in [0, 1), default 0
    centered : bool, default False
        Divide by an estimate of the gradient's variance instead of its raw second moment.
    weight_decay : float, default 0
        L2 added to the gradient.
    clipnorm, global_clipnorm, clipvalue : float, optional
        See :class:`Optimizer`.

    Notes
    -----
    The state has ``square_avg``, plus ``momentum_buffer`` when ``momentum > 0``
    and ``grad_avg`` when ``centered`` (PyTorch's names).
    """

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, weight_decay: float = 0.0, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue)
        self.alpha = _number(alpha, "alpha", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, low_open=True)
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"centered must be a bool, got {centered!r}")
        self.centered = bool(centered)
        self.slots = ("square_avg",) + (("momentum_buffer",) if self.momentum else ()) + (
            ("grad_avg",) if self.centered else ())

    def _update(self, value, grad, state, scratch):
        v, s = state["square_avg"], scratch
        np.multiply(grad, grad, out=s)
        _blas.axpby_consuming(1.0 - self.alpha, s, self.alpha, v)  # v = alpha v + (1 - alpha) g^2
        if self.centered:
            a = state["grad_avg"]
            _blas.axpby(1.0 - self.alpha, grad, self.alpha, a, s)
            np.multiply(a, a, out=s)
            np.subtract(v, s, out=s)
            np.maximum(s, 0.0, out=s)  # v >= a^2 in exact arithmetic; rounding must not give sqrt(-0.0001)
            np.sqrt(s, out=s)
        else:
            np.sqrt(v, out=s)
        s += self.eps
        np.divide(grad, s, out=s)  # g / d
        if self.momentum:
            buf = state["momentum_buffer"]
            _blas.axpby(1.0, s, self.momentum, buf, s)
            _blas.axpy(-self.lr, buf, value, s)
        else:
            _blas.axpy(-self.lr, s, value, s)

    def _decays(self):
        return {"square_avg": self.alpha, "grad_avg": self.alpha, "momentum_buffer": self.momentum}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "centered": self.centered}


@registry.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's ``torch.optim.AdamW``.

    At step t the weights are first decayed, then Adam runs on the raw gradient::

        p *= 1 - lr * weight_decay
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    Unlike ``Adam(weight_decay=...)``, the decay never enters ``m`` or ``v`` (and
    ``grad`` is left as the loss's gradient, after any clipping).

    Parameters
    ----------
    lr : float, default 1e-3
    beta1, beta2 : float in [0, 1), defaults 0.9 and 0.999
    eps : float > 0, default 1e-8
    weight_decay : float >= 0, default 1e-2
        PyTorch's default.
    clipnorm, global_clipnorm, clipvalue : float, optional
        See :class:`Optimizer`.
    """

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                         clipvalue=clipvalue)

    def _apply(self, value, grad, state, scratch):
        if self.weight_decay:
            value *= 1.0 - self.lr * self.weight_decay
        self._update(value, grad, state, scratch)


def get(identifier: Any, **kwargs: Any) -> Optimizer:
    """Resolve an optimizer name, class, instance or config dict."""
    return registry.get(identifier, **kwargs)
