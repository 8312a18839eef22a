"""explain(): one backward pass told right to left, layer by layer, with each local derivative.

Backpropagation is the chain rule applied right to left: the loss hands dL/d(output)
to the last layer, and each layer multiplies the gradient from its right by its own
local derivative and hands the product to its left. :func:`explain` runs one such pass
on a small batch and prints, for the loss and every layer, the derivative in words and
symbols (each class's ``derivative_text``, written beside its ``backward``) and the
norms of what arrives and what leaves, so a vanishing or exploding gradient can be
seen where it happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .functional import l2_norm
from .layers import Dense

__all__ = ["explain"]

_DENSE_WORDS = "multiplies the gradient by the transposed weights to hand it left, and keeps the weights' gradients"


def _describe(layer: Any) -> str:
    """The layer's local derivative in words and symbols."""
    kind = type(layer).__name__
    if isinstance(layer, Dense):
        text = f"{kind}: {_DENSE_WORDS} ({layer.derivative_text})"
        if layer.activation is not None:
            act = layer.activation
            text = f"{kind} with {type(act).__name__}: first {act.derivative_text}; then {_DENSE_WORDS} " \
                   f"({layer.derivative_text})"
        return text
    return f"{kind}: {getattr(layer, 'derivative_text', '') or 'its backward() applied to the gradient'}"


def _loss_text(loss: Any) -> str:
    text = getattr(loss, "derivative_text", "") or "dL/dy from its backward()"
    return f"{type(loss).__name__}: starts the pass with {text}"


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
    x, y = model.prepare_inputs(x, y)  # the model's own boundary checks; builds it on first use
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
