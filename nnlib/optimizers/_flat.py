"""The packed fast path: parameters that tile one flat buffer are stepped as one array,
and state entries on their way to subnormal floats are flushed to zero.

A model's parameters are views into one contiguous buffer and their gradients into
another (:func:`nnlib.parameter.pack`), so an optimizer step is a few whole-buffer
passes instead of a loop over parameters. The state is then flat as well, and each
Parameter's entry in ``Optimizer.state`` is a view into it: one set of numbers, two
ways to read them.
"""

from __future__ import annotations

import math

import numpy as np

from ..parameter import Parameter, flat_view

__all__ = ["FlatGroup", "FLUSH_EVERY", "flush_subnormals"]

#: steps between flushes of state entries on their way to subnormal (see flush_subnormals)
FLUSH_EVERY = 256


class FlatGroup:
    """Parameters stepped together: flat views of values and gradients when they tile one buffer.

    Attributes
    ----------
    params : list of Parameter
    flat_value, flat_grad : ndarray of shape (P,) or None
        None when the parameters do not tile one buffer (then each is stepped alone).
    state : dict[str, ndarray of shape (P,)] or None
        The flat state, made by :meth:`flatten_state` on the first step.
    scratch : ndarray of shape (P,) or None
        A work array for the update.
    """

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

    @property
    def packed(self) -> bool:
        return self.flat_value is not None

    def still_valid(self, params: list[Parameter]) -> bool:
        """Whether ``params`` are the same Parameter objects, holding the same arrays."""
        return len(params) == len(self.params) and all(
            p is q and p.value is v for p, q, v in zip(params, self.params, self.values)
        )

    def flatten_state(self, state: dict[Parameter, dict[str, np.ndarray]], slots: tuple[str, ...]) -> None:
        """Make the flat state; existing per-parameter entries are copied in, then become views of it."""
        flat = {s: np.zeros_like(self.flat_value) for s in slots}
        offset = 0
        for p in self.params:
            n = p.size
            old = state.get(p, {})
            views = {}
            for s in slots:
                view = flat[s][offset:offset + n].reshape(p.shape)
                if s in old:
                    view[...] = old[s]
                views[s] = view
            state[p] = views
            offset += n
        self.state = flat


def flush_subnormals(states: list[dict[str, np.ndarray]], decays: dict[str, float],
                     scratch: np.ndarray | None = None) -> None:
    """Zero the state entries that would turn subnormal before the next flush.

    A moment of a parameter whose gradient stays 0 (a dead ReLU, an always-blank pixel)
    decays geometrically into the subnormal floats, and x86 CPUs compute on those many
    times slower (measured: Adam's epoch grew ~7% by epoch 6 on Fashion-MNIST); NumPy
    has no flush-to-zero switch. So every FLUSH_EVERY steps, entries of a slot with
    per-step decay ``d`` and ``|x| < tiny / d**FLUSH_EVERY`` (at most ``sqrt(tiny)``:
    about 1e-19 in float32) become 0. For Adam with beta1 = 0.9 in float32 the
    threshold is about 6e-27, and with lr = 1e-3 the step such an entry would have made
    is below ``lr * 6e-27 / eps`` = 6e-22: no float32 weight of magnitude above ~1e-14
    can tell. A flush costs three passes over the state, once every FLUSH_EVERY steps.

    Parameters
    ----------
    states : list of dict[str, ndarray]
        Slot arrays, updated in place.
    decays : dict[str, float]
        Each slot's factor per step when the gradient is zero (momentum, beta1, ...).
    scratch : ndarray, optional
        A work array of the slots' shape.
    """
    for slot, decay in decays.items():
        for state in states:
            x = state.get(slot)
            if x is None or x.size == 0 or decay == 0.0:
                continue
            info = np.finfo(x.dtype)
            floor = math.sqrt(float(info.tiny))
            shrink = decay ** FLUSH_EVERY  # may underflow to 0.0 for a small decay
            threshold = min(float(info.tiny) / shrink, floor) if shrink else floor
            work = np.empty_like(x) if scratch is None or scratch.shape != x.shape else scratch
            np.abs(x, out=work)
            x *= np.greater_equal(work, threshold, out=work)
