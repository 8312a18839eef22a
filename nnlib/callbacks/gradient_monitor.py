"""GradientMonitor: watch gradients while training, and say when they vanish or explode.

Backpropagation multiplies the gradient by each layer's local derivative on its way
from the loss back to the input. Through many layers whose derivatives are small
(a sigmoid's is at most 1/4) the product shrinks geometrically and the first layers
stop learning: the gradients *vanish*. With derivatives larger than 1 (weights
initialized too large) it grows geometrically and training diverges: they
*explode*. The monitor sees both while ``fit`` runs and says what usually cures them;
:func:`nnlib.explain` shows one backward pass layer by layer.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Any

from .._validation import check_bool, check_int, check_number
from ..functional import l2_norm
from .base import Callback

__all__ = ["GradientHealthWarning", "GradientMonitor"]


class GradientHealthWarning(UserWarning):
    """Gradients vanish or explode in a layer; the message names the layer, the figure and a likely cure."""


def _layer_norm(params: list[Any], attr: str) -> float:
    return math.sqrt(sum(l2_norm(getattr(p, attr)) ** 2 for p in params))


_VANISH_CURE = ("ReLU activations with He initialization (weight_init='he_normal'), BatchNormalization between "
                "the layers, or a shallower network")
_EXPLODE_CURE = ("gradient clipping (e.g. optimizer=nn.SGD(lr, global_clipnorm=1.0)), a smaller learning rate, "
                 "or a smaller weight initialization (he_normal / glorot_uniform instead of a large normal)")


class GradientMonitor(Callback):
    """Record each parameterized layer's gradient norm and update ratio per epoch; warn when they go wrong.

    For every layer with parameters (named as in ``model.summary()``: ``dense_0``,
    ``batch_normalization_1``, ...) and every recorded epoch:

    - ``grad_norm/<layer>``: the mean over the epoch's batches of the L2 norm of
      the layer's gradient (all its parameters together), read from ``p.grad``
      after each step, i.e. the gradient the update used (after any clipping and
      L2 weight decay);
    - ``update_ratio/<layer>``: ``||w_end - w_begin|| / ||w_begin||`` over the
      epoch, the net relative change of the layer's parameters (one copy of the
      weights per epoch, nothing per step; NaN when ``w_begin`` is all zeros).

    Warnings (:class:`GradientHealthWarning`, at most one per layer and kind per ``fit``):

    - vanishing: a layer's gradient norm is below ``vanish_ratio`` (1e-3) times
      that of the last layer with parameters for ``patience`` recorded epochs in a row;
    - stalled: its update ratio is below ``min_update_ratio`` (1e-5) for
      ``patience`` recorded epochs in a row;
    - exploding: a gradient norm is not finite, or a batch's norm reaches
      ``explode_factor`` (100) times the layer's mean norm of the previous recorded
      epoch (in the first, of the first batch), or an epoch's mean reaches that
      factor times the smallest of the previous ``patience`` epochs' means; in
      both cases the norm must also be at least the last layer's recent level, so
      a first layer recovering from vanishing gradients is not called exploding.

    Parameters
    ----------
    every : int >= 1, default 1
        Record epochs ``0, every, 2 * every, ...``; the others cost nothing.
    patience : int >= 1, default 3
    vanish_ratio : float in (0, 1), default 1e-3
    min_update_ratio : float >= 0, default 1e-5
    explode_factor : float > 1, default 100
    warn : bool, default True
        Issue warnings (they are also kept in ``messages``).

    Attributes
    ----------
    history : dict[str, list[float]]
        ``grad_norm/<layer>`` and ``update_ratio/<layer>``, one value per recorded epoch.
    epochs : list[int]
        The 0-based epochs recorded.
    layer_names : list[str]
        The monitored layers, input to output.
    messages : list[str]
        Every warning issued during the last ``fit``.

    Notes
    -----
    The figures of a recorded epoch go into its logs, so the History that ``fit``
    returns holds them (NaN in the epochs not recorded); they are also kept in
    ``history`` here, in the same layout (:func:`nnlib.plot.plot_gradient_norms`
    takes either).
    """

    def __init__(self, every: int = 1, patience: int = 3, vanish_ratio: float = 1e-3,
                 min_update_ratio: float = 1e-5, explode_factor: float = 100.0, warn: bool = True) -> None:
        super().__init__()
        self.every = check_int(every, "every", 1)
        self.patience = check_int(patience, "patience", 1)
        self.vanish_ratio = check_number(vanish_ratio, "vanish_ratio", 0.0, 1.0, low_open=True)
        self.min_update_ratio = check_number(min_update_ratio, "min_update_ratio", 0.0)
        self.explode_factor = check_number(explode_factor, "explode_factor", 1.0, low_open=True)
        self.warn = check_bool(warn, "warn")
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.layer_names: list[str] = []
        self.messages: list[str] = []

    # -- bookkeeping ----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        layers = [layer for layer in self.model.layers if layer.parameters()]
        self._layers = [(layer.name, layer.parameters()) for layer in layers]
        self.layer_names = [name for name, _ in self._layers]
        self.history = {}
        for name in self.layer_names:
            self.history[f"grad_norm/{name}"] = []
            self.history[f"update_ratio/{name}"] = []
        self.epochs, self.messages = [], []
        self._warned: set[tuple[str, str]] = set()
        self._vanish_streak = dict.fromkeys(self.layer_names, 0)
        self._stall_streak = dict.fromkeys(self.layer_names, 0)
        self._recent = {name: deque(maxlen=self.patience) for name in self.layer_names}
        self._batch_ref: dict[str, float] = {}
        self._active = False
        kinds = {type(layer).__name__ for layer in self.model.layers}
        kinds |= {type(layer.activation).__name__ for layer in self.model.layers
                  if getattr(layer, "activation", None) is not None}
        self._saturating = sorted(kinds & {"Sigmoid", "Tanh"})

    def on_epoch_begin(self, epoch, logs=None):
        self._active = bool(self._layers) and epoch % self.every == 0
        if not self._active:
            return
        self._start = [[p.value.copy() for p in params] for _, params in self._layers]
        self._sums = [0.0] * len(self._layers)
        self._count = 0

    def on_batch_end(self, batch, logs=None):
        if not self._active:
            return
        self._count += 1
        bad, grown = [], []
        norms = [_layer_norm(params, "grad") for _, params in self._layers]
        for name, g in zip(self.layer_names, norms):
            if math.isfinite(g):
                self._batch_ref.setdefault(name, g)
        level = self._batch_ref.get(self.layer_names[-1], 0.0)  # the output layer's recent level
        for i, (name, g) in enumerate(zip(self.layer_names, norms)):
            self._sums[i] += g
            if not math.isfinite(g):
                bad.append((math.inf, name, f"the gradient norm of {name} is {g} in batch {batch + 1}"))
                continue
            ref = self._batch_ref[name]
            if ref > 0 and g >= self.explode_factor * ref and g >= level:
                grown.append((g / ref, name, f"a batch gradient norm of {g:.3g} in {name} is {g / ref:.3g}x "
                                             f"the layer's recent mean ({ref:.3g})"))
        self._report("explode", bad, "gradients are not finite in", _EXPLODE_CURE)
        self._report("explode", grown, "gradients explode in", _EXPLODE_CURE)

    def on_epoch_end(self, epoch, logs=None):
        if not self._active or self._count == 0:
            return
        self._active = False
        norms = [s / self._count for s in self._sums]
        ratios = []
        for (_, params), start in zip(self._layers, self._start):
            w0 = math.sqrt(sum(l2_norm(w) ** 2 for w in start))
            dw = math.sqrt(sum(l2_norm(p.value - w) ** 2 for p, w in zip(params, start)))
            ratios.append(dw / w0 if w0 > 0 else math.nan)
        self._start = []
        self.epochs.append(epoch)
        for (name, _), g, r in zip(self._layers, norms, ratios):
            self.history[f"grad_norm/{name}"].append(g)
            self.history[f"update_ratio/{name}"].append(r)
            if logs is not None:  # History, called last, records them
                logs[f"grad_norm/{name}"] = g
                logs[f"update_ratio/{name}"] = r
        self._check_epoch(epoch, norms, ratios)

    def on_train_end(self, logs=None):
        # A step whose gradient was not finite stops fit (TerminateOnNaN) before the update: its
        # gradient is still in p.grad.
        bad = []
        for name, params in getattr(self, "_layers", []):
            g = _layer_norm(params, "grad")
            if not math.isfinite(g):
                bad.append((math.inf, name, f"training ended on a gradient of norm {g} in {name}"))
        self._report("explode", bad, "gradients are not finite in", _EXPLODE_CURE)

    # -- diagnosis ------------------------------------------------------------------
    def _check_epoch(self, epoch: int, norms: list[float], ratios: list[float]) -> None:
        last_name, last = self.layer_names[-1], norms[-1]
        level = min(self._recent[last_name], default=0.0)  # the output layer's recent level
        grown, vanished, stalled = [], [], []
        for name, g, r in zip(self.layer_names, norms, ratios):
            recent = self._recent[name]
            if math.isfinite(g) and recent and min(recent) > 0 and g >= self.explode_factor * min(recent) \
                    and g >= level:
                grown.append((g / min(recent), name, f"the mean gradient norm of {name} grew to {g:.3g}, "
                                                     f"{g / min(recent):.3g}x its value {len(recent)} epoch(s) before"))
            if math.isfinite(g):
                recent.append(g)
                self._batch_ref[name] = g
            if name != last_name:
                vanishing = last > 0 and math.isfinite(last) and g < self.vanish_ratio * last
                self._vanish_streak[name] = self._vanish_streak[name] + 1 if vanishing else 0
                if self._vanish_streak[name] >= self.patience:
                    vanished.append((last / max(g, 1e-300), name,
                                     f"the gradient norm of {name} is {g:.3g}, {g / last:.2g}x that of {last_name} "
                                     f"({last:.3g}); below {self.vanish_ratio:g}x for {self.patience} epochs in a "
                                     f"row, so it barely learns"))
            low = math.isfinite(r) and r < self.min_update_ratio
            self._stall_streak[name] = self._stall_streak[name] + 1 if low else 0
            if self._stall_streak[name] >= self.patience:
                stalled.append((1.0 / max(r, 1e-300), name,
                                f"the parameters of {name} moved by {r:.2g} of their norm (||dw||/||w||) in epoch "
                                f"{epoch + 1}, below {self.min_update_ratio:g} for {self.patience} epochs in a row"))
        self._report("explode", grown, "gradients explode in", _EXPLODE_CURE)
        why = ""
        if self._saturating:
            kinds = " and ".join(k.lower() for k in self._saturating)
            why = (f" ({kinds} activations shrink the gradient at every layer: the sigmoid's derivative is at most "
                   "1/4, tanh's at most 1 and far less when saturated)")
        self._report("vanish", vanished, "gradients vanish in", _VANISH_CURE, why)
        self._report("stall", stalled, "updates are vanishingly small in", "a larger learning rate, or if the "
                     f"gradients vanish, {_VANISH_CURE}")

    def _report(self, kind: str, found: list[tuple[float, str, str]], headline: str, cure: str,
                why: str = "") -> None:
        """One warning for the layers in ``found`` ((severity, layer, figure sentence)) not yet warned about."""
        found = [f for f in found if (f[1], kind) not in self._warned]
        if not found:
            return
        self._warned.update((name, kind) for _, name, _ in found)
        names = [name for _, name, _ in found]
        worst = max(found, key=lambda f: f[0])[2]
        where = names[0] if len(names) == 1 else f"{len(names)} layers ({', '.join(names)})"
        message = f"{headline} {where}: {worst}{why}; likely cure: {cure}"
        self.messages.append(message)
        if self.warn and self.params.get("rank", 0) == 0:  # one warning, not one per process
            warnings.warn(message, GradientHealthWarning, stacklevel=3)
