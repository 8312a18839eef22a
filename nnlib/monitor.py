"""Gradient health: watch gradients while training (:class:`GradientMonitor`) and
explain one backward pass layer by layer (:func:`explain`).

Backpropagation multiplies the gradient by each layer's local derivative on its way
from the loss back to the input. Through many layers whose derivatives are small
(a sigmoid's is at most 1/4) the product shrinks geometrically and the first layers
stop learning: the gradients *vanish*. With derivatives larger than 1 (weights
initialized too large) it grows geometrically and training diverges: they
*explode*. The monitor sees both while ``fit`` runs and says what usually cures them.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from . import layers as layers_module
from . import losses as losses_module
from .callbacks import Callback
from .functional import l2_norm
from .schedules import record_in_history

__all__ = ["GradientHealthWarning", "GradientMonitor", "explain"]


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
    ``fit`` calls History before the other callbacks, so the figures cannot be
    placed in the epoch logs that History records. They are kept in ``history``
    here (same layout as ``History.history``; :func:`nnlib.plot.plot_gradient_norms`
    takes either), and appended to ``model.history`` when the model exposes its
    History under that name.
    """

    def __init__(self, every: int = 1, patience: int = 3, vanish_ratio: float = 1e-3,
                 min_update_ratio: float = 1e-5, explode_factor: float = 100.0, warn: bool = True) -> None:
        super().__init__()
        for what, value in (("every", every), ("patience", patience)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{what} must be an int >= 1, got {value!r}")
        self.every, self.patience = int(every), int(patience)
        self.vanish_ratio = self._number(vanish_ratio, "vanish_ratio", "in (0, 1)", lambda v: 0 < v < 1)
        self.min_update_ratio = self._number(min_update_ratio, "min_update_ratio", ">= 0", lambda v: 0 <= v < math.inf)
        self.explode_factor = self._number(explode_factor, "explode_factor", "> 1", lambda v: 1 < v < math.inf)
        if not isinstance(warn, bool):
            raise ValueError(f"warn must be True or False, got {warn!r}")
        self.warn = warn
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.layer_names: list[str] = []
        self.messages: list[str] = []

    @staticmethod
    def _number(value: Any, what: str, rule: str, valid: Callable[[float], bool]) -> float:
        ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
        if not ok or not valid(float(value)):
            raise ValueError(f"{what} must be a finite number {rule}, got {value!r}")
        return float(value)

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
            record_in_history(self.model, f"grad_norm/{name}", g)
            record_in_history(self.model, f"update_ratio/{name}", r)
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
        if self.warn:
            warnings.warn(message, GradientHealthWarning, stacklevel=3)


# -- explain: one backward pass, right to left ------------------------------------------------
_LOSS_TEXT = {
    losses_module.SoftmaxCrossEntropy: "starts the pass with dL/dz = (softmax(z) - onehot(y)) / N",
    losses_module.MSE: "starts the pass with dL/dy = 2 (y - t) / (N D)",
    losses_module.BinaryCrossEntropy: "starts the pass with dL/dz = (sigmoid(z) - t) / (N D)",
}
_DENSE_WORDS = "multiplies the gradient by the transposed weights to hand it left, and keeps the weights' gradients"


def _describe(layer: Any) -> str:
    """The layer's local derivative in words and symbols."""
    kind = type(layer).__name__
    if isinstance(layer, layers_module.Dense):
        text = f"{kind}: {_DENSE_WORDS} ({layer.derivative_text})"
        if layer.activation is not None:
            act = layer.activation
            text = f"{kind} with {type(act).__name__}: first {act.derivative_text}; then {_DENSE_WORDS} " \
                   f"({layer.derivative_text})"
        return text
    return f"{kind}: {getattr(layer, 'derivative_text', '') or 'its backward() applied to the gradient'}"


def _loss_text(loss: Any) -> str:
    for cls, text in _LOSS_TEXT.items():
        if isinstance(loss, cls):
            return f"{type(loss).__name__}: {text}"
    return f"{type(loss).__name__}: starts the pass with dL/dy from its backward()"


def explain(model: Any, x: Any, y: Any, *, training: bool = True, verbose: bool = True,
            print_fn: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Run one forward and backward pass on (x, y) and tell it right to left.

    For the loss and then each layer from the output back to the input: its local
    derivative in words and symbols, the shape and L2 norm of the gradient arriving
    from the right (dL/d output) and of the gradient it hands to the left
    (dL/d input), their ratio, and the norms of its parameters' gradients. The
    model is left as it was: parameter gradients, BatchNormalization's running
    statistics, Dropout's generator and every layer's ``needs_input_grad`` are restored.

    Parameters
    ----------
    model : Sequential
        Compiled (the loss starts the pass); built on ``x`` if it is not yet.
    x : array-like of shape (N, D_in)
        A small batch.
    y : array-like
        Its targets, as for ``fit``.
    training : bool, default True
        Run the layers in training mode (Dropout masks, batch statistics), as
        ``fit`` does.
    verbose : bool, default True
        Print the account.
    print_fn : callable, default print

    Returns
    -------
    list of dict
        Right to left: first the loss (``name`` "loss", ``type``, ``derivative``,
        ``loss`` value, ``to_left_shape``, ``to_left_norm``), then one dict per layer
        with ``name``, ``type``, ``derivative``, ``from_right_shape``,
        ``from_right_norm``, ``to_left_shape``, ``to_left_norm``, ``gain``
        (``to_left_norm / from_right_norm``) and ``param_grad_norms``
        (``{parameter name: norm}``).
    """
    if getattr(model, "loss", None) is None:
        raise RuntimeError("call model.compile(optimizer=..., loss=...) before explain()")
    x, y = model._prepare(x, y)  # the model's own boundary checks
    model._ensure_built(x.shape[1])
    layers = list(model.layers)
    params = model.parameters()
    saved_flags = [layer.needs_input_grad for layer in layers]
    saved_states = [layer.get_state() for layer in layers]
    saved_grads = [p.grad.copy() for p in params]
    try:
        for layer in layers:
            layer.needs_input_grad = True
        h = x
        for layer in layers:
            h = layer.forward(h, training)
        loss_value = float(model.loss.forward(h, y))
        g = model.loss.backward()
        records: list[dict[str, Any]] = [{
            "name": "loss", "type": type(model.loss).__name__, "derivative": _loss_text(model.loss),
            "loss": loss_value, "to_left_shape": tuple(g.shape), "to_left_norm": l2_norm(g)}]
        for layer in reversed(layers):
            shape_in, norm_in = tuple(g.shape), l2_norm(g)
            g = layer.backward(g)
            norm_out = l2_norm(g)
            records.append({
                "name": layer.name, "type": type(layer).__name__, "derivative": _describe(layer),
                "from_right_shape": shape_in, "from_right_norm": norm_in,
                "to_left_shape": tuple(g.shape), "to_left_norm": norm_out,
                "gain": norm_out / norm_in if norm_in > 0 else math.nan,
                "param_grad_norms": {p.name: l2_norm(p.grad) for p in layer.parameters()},
            })
    finally:
        for layer, flag, state in zip(layers, saved_flags, saved_states):
            layer.needs_input_grad = flag
            if state:
                layer.set_state(state)
        for p, grad in zip(params, saved_grads):
            p.grad[...] = grad
    if verbose:
        print_fn(_format(records, x.shape[0]))
    return records


def _format(records: list[dict[str, Any]], n: int) -> str:
    loss = records[0]
    lines = [f"One backward pass on {n} samples, right to left (loss {loss['loss']:.4g}):",
             f"  loss  {loss['derivative']}",
             f"        hands left   {str(loss['to_left_shape']):<12} norm {loss['to_left_norm']:.3e}"]
    for r in records[1:]:
        lines.append(f"  {r['name']}  {r['derivative']}")
        lines.append(f"        from right   {str(r['from_right_shape']):<12} norm {r['from_right_norm']:.3e}")
        lines.append(f"        hands left   {str(r['to_left_shape']):<12} norm {r['to_left_norm']:.3e}"
                     f"   (x{r['gain']:.3g})")
        for pname, pn in r["param_grad_norms"].items():
            lines.append(f"        grad of {pname}: norm {pn:.3e}")
    return "\n".join(lines)
