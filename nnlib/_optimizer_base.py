"""The optimizer base class: per-parameter state, the flat fast path, clipping, weight
decay, subnormal flushing and the windowed state (see :class:`Optimizer`).

The optimizers themselves (and their registry) are in :mod:`nnlib.optimizers`, which
re-exports :class:`Optimizer`; this module imports nothing from it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _blas
from .functional import l2_norm
from .parameter import Parameter, flat_view

__all__ = ["Optimizer", "FLUSH_EVERY", "GLOBAL_CLIPNORM_EPS"]

#: PyTorch clip_grad_norm_'s guard: grads *= max_norm / (total_norm + 1e-6)
GLOBAL_CLIPNORM_EPS = 1e-6
#: steps between flushes of state entries on their way to subnormal (Optimizer._flush_subnormals)
FLUSH_EVERY = 256
#: dtypes whose range leaves room for the windowed state's growth (float16 tops out at 65504)
_WINDOW_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
        ``{Parameter: {slot: ndarray}}``, created lazily; always the true values.

    Notes
    -----
    *Windowed state.* A moment updated as ``x = d x + g`` (decay ``d``) costs BLAS
    ``axpby``, which OpenBLAS runs on one thread. When ``windowed`` is set and the
    parameters tile one flat buffer, the buffer instead holds ``x / d**k``, ``k``
    steps into a window, and the update becomes ``x~ += g / d**k``: an ``axpy``,
    which runs on all BLAS threads (measured 24.6 -> 13.6 us for 235k float32).
    Readers multiply by ``d**k``, a Python scalar. The window closes (the buffer is
    multiplied by ``d**k`` and ``k`` returns to 0) before ``d**-k`` exceeds 2**24,
    at every subnormal flush, before the parameter list or a decay changes, before
    pickling or copying, at :meth:`consolidate` (``fit`` calls it after every epoch)
    and whenever ``state`` is read. The arrays in ``state`` are live views of the flat
    buffer: one kept across steps holds the scaled values until the window closes, so
    read ``state`` again for true values (after each epoch of ``fit`` they are true).
    Rounding differs from the unwindowed form in the last bits. Only float32 and
    float64 state is windowed, and a subclass that defines its own ``_update`` is not
    windowed unless it sets ``windowed = True`` itself.
    """

    slots: tuple[str, ...] = ()
    #: whether the flat state of the slots in _decays() is kept in windowed form
    windowed = False
    _WINDOW_GROWTH = 2.0 ** 24  # largest d**-k a window reaches: float32 keeps 2**104 of headroom

    def __init__(self, lr: float, weight_decay: float = 0.0, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, clipvalue: float | None = None) -> None:
        self.lr = _number(lr, "lr", 0.0, low_open=True)
        self.weight_decay = _number(weight_decay, "weight_decay", 0.0)
        clips = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm, "clipvalue": clipvalue}
        given = [k for k, v in clips.items() if v is not None]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} are mutually exclusive: pass at most one, got "
                             + ", ".join(f"{k}={clips[k]!r}" for k in given))
        for k in given:
            clips[k] = _number(clips[k], k, 0.0, low_open=True)
        self.clipnorm: float | None = clips["clipnorm"]
        self.global_clipnorm: float | None = clips["global_clipnorm"]
        self.clipvalue: float | None = clips["clipvalue"]
        self.iterations = 0
        self._state: dict[Parameter, dict[str, np.ndarray]] = {}
        self._group: _Group | None = None
        self._window = 0  # steps into the current window: the flat state holds x / d**k
        self._window_decays: dict[str, float] = {}
        self._window_limit = 0

    @property
    def state(self) -> dict[Parameter, dict[str, np.ndarray]]:
        self.consolidate()
        return self._state

    @state.setter
    def state(self, value: dict[Parameter, dict[str, np.ndarray]]) -> None:
        self.consolidate()
        self._state, self._group = value, None  # the flat buffers are rebuilt from it at the next step

    def step(self, params: list[Parameter]) -> None:
        """Update every parameter's ``value`` in place from its ``grad``."""
        params = list(params)
        group = self._group
        if group is None or not group.still_valid(params):
            self.consolidate()
            group = self._group = _Group(params)
        self.iterations += 1
        self._clip(group)
        if group.flat_value is not None:
            if group.state is None:
                group.state = self._flat_state(group)
            if self.windowed and group.flat_value.dtype in _WINDOW_DTYPES:
                self._advance_window()
            elif self._window:  # switched off between steps
                self.consolidate()
            self._apply(group.flat_value, group.flat_grad, group.state, group.scratch)
        else:
            for p in params:
                self._apply(p.value, p.grad, self._param_state(p), np.empty_like(p.value))
        flush = self.iterations % FLUSH_EVERY == 0
        if self._window and (flush or self._window >= self._window_limit):
            self.consolidate()
        if flush:
            states = [group.state] if group.flat_value is not None else [self._state[p] for p in params]
            self._flush_subnormals(states, group.scratch)

    def _advance_window(self) -> None:
        """Count this step into the window (opening one if needed); k stays 0 when no window fits."""
        decays = {slot: float(d) for slot, d in self._decays().items()}  # NumPy scalars: float64 powers
        if self._window and decays != self._window_decays:
            self.consolidate()  # a decay was changed between steps: settle with the old ones
        if not self._window:
            if not all(0.0 < d < 1.0 for d in decays.values()):
                return  # a decay of 0 forgets everything each step: no window
            steps = min(int(math.log(self._WINDOW_GROWTH) / -math.log(d)) for d in decays.values())
            if steps < 2:
                return
            self._window_decays, self._window_limit = decays, min(steps, FLUSH_EVERY)
        self._window += 1

    def consolidate(self) -> None:
        """Close the current window: the flat state becomes true values again (``x *= d**k``).

        ``fit`` calls this at the end of every epoch, so a run saved between epochs and
        resumed is bit-identical to one that never stopped; reading ``state`` does it too
        (mid-epoch, that changes the last bits of later steps).
        """
        k = self._window
        if not k:
            return
        for slot, decay in self._window_decays.items():
            self._group.state[slot] *= decay ** k  # a Python float: float32 stays float32
        self._window = 0

    def __getstate__(self) -> dict[str, Any]:
        self.consolidate()  # copies hold true values
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_state" not in state:  # pickled before the windowed state existed: plain values
            state["_state"] = state.pop("state", {})
        state.setdefault("_window", 0)
        state.setdefault("_window_decays", {})
        state.setdefault("_window_limit", 0)
        self.__dict__.update(state)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_update" in cls.__dict__ and "windowed" not in cls.__dict__:
            cls.windowed = False  # a new _update knows nothing of the windowed form unless it says so

    def _decays(self) -> dict[str, float]:
        """Each state slot's factor per step when the gradient is zero (momentum, beta1, ...)."""
        return {}

    def _flush_subnormals(self, states: list[dict[str, np.ndarray]], scratch: np.ndarray | None = None) -> None:
        """Zero the state entries that would turn subnormal before the next flush.

        A moment of a parameter whose gradient stays 0 (a dead ReLU, an always-blank
        pixel) decays geometrically into the subnormal floats, and x86 CPUs compute on
        those many times slower (measured: Adam's epoch grew ~7% by epoch 6 on
        Fashion-MNIST); NumPy has no flush-to-zero switch. So every FLUSH_EVERY steps,
        entries with ``|x| < tiny / decay**FLUSH_EVERY`` (at most ``sqrt(tiny)``:
        about 1e-19 in float32) become 0. For Adam with beta1 = 0.9 in float32 the
        threshold is about 6e-27, and with lr = 1e-3 the step such an entry would have
        made is below ``lr (1 - beta1) 6e-27 / eps`` = 6e-23: no float32 weight of
        magnitude above ~1e-15 can tell. A flush costs three passes over the state,
        once every FLUSH_EVERY steps.
        """
        for slot, decay in self._decays().items():
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

    def _clip(self, group: _Group) -> None:
        """Clip the gradients in place (before weight decay), on the flat buffer when there is one."""
        if self.clipvalue is not None:
            grads = [group.flat_grad] if group.flat_grad is not None else [p.grad for p in group.params]
            for g in grads:
                np.clip(g, -self.clipvalue, self.clipvalue, out=g)
        elif self.clipnorm is not None:  # per parameter: needs each parameter's own norm
            for p in group.params:
                norm = l2_norm(p.grad)
                if norm > self.clipnorm:
                    p.grad *= self.clipnorm / norm
        elif self.global_clipnorm is not None:
            if group.flat_grad is not None:
                total = l2_norm(group.flat_grad)
            else:
                total = math.sqrt(sum(l2_norm(p.grad) ** 2 for p in group.params))
            coef = self.global_clipnorm / (total + GLOBAL_CLIPNORM_EPS)
            if coef < 1.0:  # PyTorch clamps the factor to 1: small gradients are left alone
                for g in [group.flat_grad] if group.flat_grad is not None else [p.grad for p in group.params]:
                    g *= coef

    def _apply(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
               scratch: np.ndarray) -> None:
        if self.weight_decay:
            _blas.axpy(self.weight_decay, value, grad, scratch)
        self._update(value, grad, state, scratch)

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
                scratch: np.ndarray) -> None:
        raise NotImplementedError

    def _param_state(self, p: Parameter) -> dict[str, np.ndarray]:
        state = self._state.get(p)
        if state is None:
            state = self._state[p] = {s: np.zeros_like(p.value) for s in self.slots}
        return state

    def _flat_state(self, group: _Group) -> dict[str, np.ndarray]:
        """Flat state buffers; existing per-parameter state is copied in, then viewed."""
        flat = {s: np.zeros_like(group.flat_value) for s in self.slots}
        offset = 0
        for p in group.params:
            n = p.size
            old = self._state.get(p, {})
            views = {}
            for s in self.slots:
                view = flat[s][offset:offset + n].reshape(p.shape)
                if s in old:
                    view[...] = old[s]
                views[s] = view
            self._state[p] = views
            offset += n
        return flat

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
