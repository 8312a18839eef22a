"""Optimizers with PyTorch's arithmetic, so a run can be reproduced step for step.

An optimizer validates its hyperparameters when constructed, never holds the model,
and keeps its state per :class:`~nnlib.parameter.Parameter`, created lazily on the
first :meth:`Optimizer.step`. When the parameters tile one flat buffer (as a
model's do), the state is flat too and each step is a few whole-buffer in-place
ufuncs; each Parameter's state entries are views into it.

Weight decay is L2 added to the gradient (``g = grad + wd * p``), as in PyTorch's
SGD and Adam. It is added in place, so after a step ``Parameter.grad`` holds the
gradient the update actually used; nothing else is written into ``grad``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .parameter import Parameter, flat_view
from .registry import Registry

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "registry", "get"]


def _number(value: Any, what: str, low: float, high: float = math.inf, *, low_open: bool = False,
            high_open: bool = True) -> float:
    """Validate a real hyperparameter against an interval and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{what} must lie in {interval}, got {value!r}")
    return v


class _Group:
    """Parameters stepped together: flat views when packed, else the list itself."""

    __slots__ = ("params", "values", "flat_value", "flat_grad", "state", "scratch")

    def __init__(self, params: list[Parameter]) -> None:
        self.params = params
        self.values = [p.value for p in params]
        self.flat_value = flat_view(self.values)
        self.flat_grad = flat_view([p.grad for p in params]) if self.flat_value is not None else None
        if self.flat_grad is None:
            self.flat_value = None
        self.state: dict[str, np.ndarray] | None = None
        self.scratch = None if self.flat_value is None else np.empty_like(self.flat_value)

    def still_valid(self, params: list[Parameter]) -> bool:
        return len(params) == len(self.params) and all(
            p is q and p.value is v for p, q, v in zip(params, self.params, self.values)
        )


class Optimizer:
    """Base class.

    Subclasses list their per-parameter state in ``slots`` and implement
    ``_update(value, grad, state, scratch)`` on arrays of one shape (``scratch`` is
    a work array of that shape); it runs once on the flat buffers or once per
    parameter.

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    weight_decay : float, default 0
        L2 penalty coefficient, >= 0.

    Attributes
    ----------
    iterations : int
        Number of steps taken (PyTorch's ``step`` in the state; one count for all
        parameters, since they are always stepped together).
    state : dict
        ``{Parameter: {slot: ndarray}}``, created lazily.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = _number(lr, "lr", 0.0, low_open=True)
        self.weight_decay = _number(weight_decay, "weight_decay", 0.0)
        self.iterations = 0
        self.state: dict[Parameter, dict[str, np.ndarray]] = {}
        self._group: _Group | None = None

    def step(self, params: list[Parameter]) -> None:
        """Update every parameter's ``value`` in place from its ``grad``."""
        params = list(params)
        group = self._group
        if group is None or not group.still_valid(params):
            group = self._group = _Group(params)
        self.iterations += 1
        if group.flat_value is not None:
            if group.state is None:
                group.state = self._flat_state(group)
            self._apply(group.flat_value, group.flat_grad, group.state, group.scratch)
        else:
            for p in params:
                self._apply(p.value, p.grad, self._param_state(p), np.empty_like(p.value))

    def _apply(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
               scratch: np.ndarray) -> None:
        if self.weight_decay:
            np.multiply(value, self.weight_decay, out=scratch)
            grad += scratch
        self._update(value, grad, state, scratch)

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
                scratch: np.ndarray) -> None:
        raise NotImplementedError

    def _param_state(self, p: Parameter) -> dict[str, np.ndarray]:
        state = self.state.get(p)
        if state is None:
            state = self.state[p] = {s: np.zeros_like(p.value) for s in self.slots}
        return state

    def _flat_state(self, group: _Group) -> dict[str, np.ndarray]:
        """Flat state buffers; existing per-parameter state is copied in, then viewed."""
        flat = {s: np.zeros_like(group.flat_value) for s in self.slots}
        offset = 0
        for p in group.params:
            n = p.size
            old = self.state.get(p, {})
            views = {}
            for s in self.slots:
                view = flat[s][offset:offset + n].reshape(p.shape)
                if s in old:
                    view[...] = old[s]
                views[s] = view
            self.state[p] = views
            offset += n
        return flat

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


registry = Registry("optimizer", base=Optimizer)


@registry.register("sgd")
class SGD(Optimizer):
    """Plain stochastic gradient descent.

    ``g = grad + weight_decay * p;  p -= lr * g``

    Parameters
    ----------
    lr : float, default 0.01
    weight_decay : float, default 0
    """

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)

    def _update(self, value, grad, state, scratch):
        value -= np.multiply(grad, self.lr, out=scratch)


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
    """

    slots = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def _update(self, value, grad, state, scratch):
        v = state["velocity"]
        v *= self.momentum
        v += grad
        if self.nesterov:
            np.multiply(v, self.momentum, out=scratch)
            scratch += grad
            scratch *= self.lr
        else:
            np.multiply(v, self.lr, out=scratch)
        value -= scratch

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

    Notes
    -----
    To save passes over memory, ``state[p]["m"]`` and ``state[p]["v"]`` hold the
    rescaled sums ``M = m / (1 - beta1)`` and ``V = v / (1 - beta2)``, updated as
    ``M = beta1 M + g`` and ``V = beta2 V + g^2``; all constant factors meet in two
    scalars. :meth:`moments` returns PyTorch's ``(m, v)`` for a parameter.
    """

    slots = ("m", "v")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.beta1 = _number(beta1, "beta1", 0.0, 1.0)
        self.beta2 = _number(beta2, "beta2", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, low_open=True)

    def moments(self, p: Parameter) -> tuple[np.ndarray, np.ndarray]:
        """PyTorch's ``exp_avg`` and ``exp_avg_sq`` for ``p`` (copies)."""
        state = self.state[p]
        return state["m"] * (1.0 - self.beta1), state["v"] * (1.0 - self.beta2)

    def _update(self, value, grad, state, scratch):
        m, v, s = state["m"], state["v"], scratch
        t = self.iterations
        m *= self.beta1
        m += grad
        np.multiply(grad, grad, out=s)
        v *= self.beta2
        v += s
        # p -= lr (1-b1)/bc1 * M / (sqrt((1-b2)/bc2) sqrt(V) + eps) = A * M / (sqrt(V) + e)
        # (Python floats: float32 buffers stay float32)
        c = math.sqrt((1.0 - self.beta2) / (1.0 - self.beta2 ** t))
        step_scale = self.lr * (1.0 - self.beta1) / ((1.0 - self.beta1 ** t) * c)
        np.sqrt(v, out=s)
        s += self.eps / c
        np.divide(m, s, out=s)
        s *= step_scale
        value -= s

    def get_config(self):
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


def get(identifier: Any, **kwargs: Any) -> Optimizer:
    """Resolve an optimizer name, class, instance or config dict."""
    return registry.get(identifier, **kwargs)
