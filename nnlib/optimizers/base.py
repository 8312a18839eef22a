"""The optimizer base class: hyperparameter checks, lazy per-parameter state, clipping,
weight decay, and the registry every optimizer is listed in.

An optimizer validates its hyperparameters when constructed, never holds the model,
and keeps its state per :class:`~nnlib.parameter.Parameter`, created lazily on the
first :meth:`Optimizer.step`. When the parameters tile one flat buffer (as a model's
do) the step runs once on the whole buffer (see :mod:`nnlib.optimizers._flat`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _blas
from .._validation import check_number
from ..functional import l2_norm
from ..parameter import Parameter
from ..registry import Registry
from ._flat import FLUSH_EVERY, FlatGroup, flush_subnormals

__all__ = ["Optimizer", "registry", "get", "GLOBAL_CLIPNORM_EPS"]

#: PyTorch clip_grad_norm_'s guard: grads *= max_norm / (total_norm + 1e-6)
GLOBAL_CLIPNORM_EPS = 1e-6


class Optimizer:
    """Base class.

    A subclass lists its per-parameter state in ``slots`` and implements two updates
    on arrays of one shape, after clipping and weight decay:

    - ``_update(value, grad, state, scratch)``, the fast path, in as few passes over
      memory as possible (``scratch`` is a work array of that shape); it runs once on
      the flat buffers or once per parameter;
    - ``_reference_update(value, grad, state)``, the lines of its docstring written
      plainly in NumPy, used when ``reference`` is True. Tests run both over many
      steps and compare them.

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    weight_decay : float, default 0
        L2 penalty coefficient, >= 0.
    clipnorm : float > 0, optional
        Scale each parameter's gradient so its L2 norm is at most ``clipnorm``.
    global_clipnorm : float > 0, optional
        Scale all gradients together, as PyTorch's ``clip_grad_norm_``:
        ``total = sqrt(sum of every squared entry)``; when
        ``c = global_clipnorm / (total + 1e-6)`` is below 1, ``grad *= c``.
    clipvalue : float > 0, optional
        Clip each gradient entry to ``[-clipvalue, clipvalue]``.
        At most one of the three clipping arguments may be given; clipping is
        applied before weight decay.

    Attributes
    ----------
    iterations : int
        Number of steps taken (PyTorch's ``step`` in the state; one count for all
        parameters, since they are always stepped together).
    state : dict
        ``{Parameter: {slot: ndarray}}``, created lazily. The arrays are the state
        itself (views of the flat state on the packed path), so reading them never
        changes anything.
    reference : bool, default False
        Step with ``_reference_update`` instead of the fast path.
    """

    slots: tuple[str, ...] = ()
    reference = False

    def __init__(self, lr: float, weight_decay: float = 0.0, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        self.lr = check_number(lr, "lr", 0.0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", 0.0)
        clips = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm, "clipvalue": clipvalue}
        given = [k for k, v in clips.items() if v is not None]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} are mutually exclusive: pass at most one, got "
                             + ", ".join(f"{k}={clips[k]!r}" for k in given))
        for k in given:
            clips[k] = check_number(clips[k], k, 0.0, low_open=True)
        self.clipnorm: float | None = clips["clipnorm"]
        self.global_clipnorm: float | None = clips["global_clipnorm"]
        self.clipvalue: float | None = clips["clipvalue"]
        self.iterations = 0
        self._state: dict[Parameter, dict[str, np.ndarray]] = {}
        self._group: FlatGroup | None = None

    @property
    def state(self) -> dict[Parameter, dict[str, np.ndarray]]:
        return self._state

    @state.setter
    def state(self, value: dict[Parameter, dict[str, np.ndarray]]) -> None:
        self._state, self._group = value, None  # the flat buffers are rebuilt from it at the next step

    def step(self, params: list[Parameter]) -> None:
        """Update every parameter's ``value`` in place from its ``grad``."""
        params = list(params)
        group = self._group
        if group is None or not group.still_valid(params):
            group = self._group = FlatGroup(params)
        self.iterations += 1
        self._clip(group)
        if group.packed:
            if group.state is None:
                group.flatten_state(self._state, self.slots)
            self._apply(group.flat_value, group.flat_grad, group.state, group.scratch)
        else:
            for p in params:
                self._apply(p.value, p.grad, self._param_state(p), np.empty_like(p.value))
        if self.iterations % FLUSH_EVERY == 0:  # the state lists are built only then, not every step
            states = [group.state] if group.packed else [self._state[p] for p in params]
            flush_subnormals(states, {slot: float(d) for slot, d in self._decays().items()}, group.scratch)

    def _decays(self) -> dict[str, float]:
        """Each state slot's factor per step when the gradient is zero (momentum, beta1, ...)."""
        return {}

    def _clip(self, group: FlatGroup) -> None:
        """Clip the gradients in place (before weight decay), on the flat buffer when there is one."""
        grads = [group.flat_grad] if group.packed else [p.grad for p in group.params]
        if self.clipvalue is not None:
            for g in grads:
                np.clip(g, -self.clipvalue, self.clipvalue, out=g)
        elif self.clipnorm is not None:  # per parameter: needs each parameter's own norm
            for p in group.params:
                norm = l2_norm(p.grad)
                if norm > self.clipnorm:
                    p.grad *= self.clipnorm / norm
        elif self.global_clipnorm is not None:
            total = l2_norm(grads[0]) if group.packed else math.sqrt(sum(l2_norm(g) ** 2 for g in grads))
            coef = self.global_clipnorm / (total + GLOBAL_CLIPNORM_EPS)
            if coef < 1.0:  # PyTorch clamps the factor to 1: small gradients are left alone
                for g in grads:
                    g *= coef

    def _apply(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
               scratch: np.ndarray) -> None:
        """L2 weight decay into the gradient (in place: ``grad`` then holds what the update used), then the update."""
        if self.weight_decay:
            _blas.axpy(self.weight_decay, value, grad, scratch)  # g = grad + wd * p
        if self.reference:
            self._reference_update(value, grad, state)
        else:
            self._update(value, grad, state, scratch)

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
                scratch: np.ndarray) -> None:
        raise NotImplementedError

    def _reference_update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no reference update")

    def _param_state(self, p: Parameter) -> dict[str, np.ndarray]:
        state = self._state.get(p)
        if state is None:
            state = self._state[p] = {s: np.zeros_like(p.value) for s in self.slots}
        return state

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


registry = Registry("optimizer", base=Optimizer)


def get(identifier: Any, **kwargs: Any) -> Optimizer:
    """Resolve an optimizer name, class, instance or config dict."""
    return registry.get(identifier, **kwargs)
