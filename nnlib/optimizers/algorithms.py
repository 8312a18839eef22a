"""SGD, Momentum, Adam, RMSprop and AdamW with PyTorch's arithmetic, step for step.

Each algorithm is written twice, side by side: ``_reference_update`` is its docstring's
lines in plain NumPy, and ``_update`` is the same arithmetic in the fewest passes over
memory (BLAS ``axpby``/``axpy``/``rot`` from NumPy's own OpenBLAS where it is found,
see :mod:`nnlib._blas`, else NumPy ufuncs). The state holds exactly PyTorch's
quantities (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``square_avg`` ...,
under the names in ``slots``).

Weight decay is L2 added to the gradient (``g = grad + wd * p``), as in PyTorch's SGD,
RMSprop and Adam, in place, so after a step ``Parameter.grad`` holds the gradient the
update used; only :class:`AdamW` decays the weights directly. Clipping comes first
(see :class:`~nnlib.optimizers.base.Optimizer`).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _blas
from .._validation import check_bool, check_number
from ..parameter import Parameter
from .base import Optimizer, registry

__all__ = ["SGD", "Momentum", "Adam", "RMSprop", "AdamW"]


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

    def _reference_update(self, value, grad, state):
        value -= self.lr * grad

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
    momentum : float in [0, 1], default 0.9
        (1 never forgets a gradient: allowed, as PyTorch and scikit-learn allow it)
    nesterov : bool, default False
    weight_decay : float, default 0
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, at most one; see :class:`Optimizer`.
    """

    slots = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, *, clipnorm: float | None = None, global_clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0, high_open=False)
        self.nesterov = check_bool(nesterov, "nesterov")

    def _reference_update(self, value, grad, state):
        v = state["velocity"]
        v[...] = self.momentum * v + grad
        value -= self.lr * (grad + self.momentum * v) if self.nesterov else self.lr * v

    def _update(self, value, grad, state, scratch):
        v = state["velocity"]
        _blas.axpby(1.0, grad, self.momentum, v, scratch)  # v = mu v + g, one pass
        if self.nesterov:  # p -= lr (g + mu v), as two one-pass updates
            _blas.axpy(-self.lr, grad, value, scratch)
            _blas.axpy(-self.lr * self.momentum, v, value, scratch)
        else:
            _blas.axpy(-self.lr, v, value, scratch)

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

    ``state[p]["m"]`` and ``state[p]["v"]`` are PyTorch's ``exp_avg`` and ``exp_avg_sq``.

    Parameters
    ----------
    lr : float, default 1e-3
    beta1, beta2 : float in [0, 1), defaults 0.9 and 0.999
    eps : float > 0, default 1e-8
        Added after the square root.
    weight_decay : float, default 0
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, at most one; see :class:`Optimizer`.
    """

    slots = ("m", "v")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, *, clipnorm: float | None = None, global_clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        super().__init__(lr, weight_decay, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue)
        self.beta1 = check_number(beta1, "beta1", 0.0, 1.0)
        self.beta2 = check_number(beta2, "beta2", 0.0, 1.0)
        self.eps = check_number(eps, "eps", 0.0, low_open=True)

    def moments(self, p: Parameter) -> tuple[np.ndarray, np.ndarray]:
        """PyTorch's ``exp_avg`` and ``exp_avg_sq`` for ``p`` (copies of ``state[p]``)."""
        state = self.state[p]
        return state["m"].copy(), state["v"].copy()

    def _reference_update(self, value, grad, state):
        m, v, t = state["m"], state["v"], self.iterations
        m[...] = self.beta1 * m + (1 - self.beta1) * grad
        v[...] = self.beta2 * v + (1 - self.beta2) * grad**2
        value -= self.lr * (m / (1 - self.beta1**t)) / (np.sqrt(v / (1 - self.beta2**t)) + self.eps)

    def _update(self, value, grad, state, scratch):
        m, v, s, t = state["m"], state["v"], scratch, self.iterations
        b1, b2 = float(self.beta1), float(self.beta2)  # Python floats: float32 buffers stay float32
        _blas.axpby(1.0 - b1, grad, b1, m, s)  # m = b1 m + (1 - b1) g
        np.multiply(grad, grad, out=s)
        # v = b2 v + (1 - b2) g^2 (s is spent) by BLAS rot rather than axpby: rot also
        # writes s on both BLAS threads, so np.sqrt below takes s's cache lines over instead
        # of first invalidating the other core's read-only copies (measured ~8 us a step)
        _blas.axpby_consuming(1.0 - b2, s, b2, v)
        # lr m / bc1 / (sqrt(v / bc2) + eps) = (lr sqrt(bc2) / bc1) m / (sqrt(v) + eps sqrt(bc2)):
        # the bias corrections meet in two scalars, so the pass count stays at four
        root_bc2 = math.sqrt(1.0 - b2**t)
        np.sqrt(v, out=s)
        s += self.eps * root_bc2
        np.divide(m, s, out=s)
        _blas.axpy(-float(self.lr) * root_bc2 / (1.0 - b1**t), s, value, s)

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
        self.alpha = check_number(alpha, "alpha", 0.0, 1.0)
        self.eps = check_number(eps, "eps", 0.0, low_open=True)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        self.centered = check_bool(centered, "centered")
        self.slots = ("square_avg",) + (("momentum_buffer",) if self.momentum else ()) + (
            ("grad_avg",) if self.centered else ())

    def _reference_update(self, value, grad, state):
        v = state["square_avg"]
        v[...] = self.alpha * v + (1 - self.alpha) * grad**2
        if self.centered:
            a = state["grad_avg"]
            a[...] = self.alpha * a + (1 - self.alpha) * grad
            d = np.sqrt(np.maximum(v - a**2, 0.0)) + self.eps  # v >= a^2 but for rounding
        else:
            d = np.sqrt(v) + self.eps
        if self.momentum:
            buf = state["momentum_buffer"]
            buf[...] = self.momentum * buf + grad / d
            value -= self.lr * buf
        else:
            value -= self.lr * grad / d

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
            value *= 1.0 - self.lr * self.weight_decay  # decoupled: the gradient is left alone
        if self.reference:
            self._reference_update(value, grad, state)
        else:
            self._update(value, grad, state, scratch)
