"""Backpropagation you can check: numerical and symbolic gradient checks.

:func:`check_gradients` compares ``backward`` with float64 central differences of
a scalar objective; :func:`check_symbolic` compares it with ``sympy.diff`` of the
same function written symbolically (each layer's and loss's ``symbolic`` form).
Neither raises on a mismatch: both return a :class:`GradCheckResult`.

For a layer the scalar objective is ``sum(forward(x) * R)`` with a fixed random
``R``, so ``backward(R)`` is exactly its gradient; for a loss it is the loss itself,
and for a model the compiled loss of its output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .layers import Layer
from .losses import Loss, SoftmaxCrossEntropy
from .model import Sequential

__all__ = ["GradCheckResult", "check_gradients", "check_symbolic"]


@dataclass
class GradCheckResult:
    """Outcome of a gradient check.

    Attributes
    ----------
    ok : bool
        Every entry within ``atol + rtol * |reference|``.
    max_error : float
        Largest absolute difference between analytic and reference gradients.
    worst : str
        Name of the array ("input" or a parameter name) holding ``max_error``.
    errors : dict[str, float]
        Largest absolute difference per array.
    method : str
        "numerical" or "symbolic".
    """

    ok: bool
    max_error: float
    worst: str
    errors: dict[str, float] = field(default_factory=dict)
    method: str = "numerical"

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"{self.method} gradient check {verdict}: max error {self.max_error:.2e} in {self.worst} ({parts})"


def _as_float64(obj: Any) -> Any:
    """A float64 copy of a layer or model (parameters cast, caches dropped); the original is untouched."""
    if isinstance(obj, Sequential):  # rebuilt through the model's public methods: weights, layer state, compile
        model = Sequential([copy.deepcopy(layer) for layer in obj.layers], seed=obj.seed, dtype="float64",
                           name=obj.name)
        if not model.built:
            model.build(obj.input_shape)
        model.set_weights(obj.get_weights())
        for layer, original in zip(model.layers, obj.layers):
            if original.get_state():
                layer.set_state(original.get_state())
        if obj.loss is not None:
            model.compile(optimizer=copy.deepcopy(obj.optimizer), loss=copy.deepcopy(obj.loss))
        return model
    layer = copy.deepcopy(obj)
    for item in filter(None, [layer, getattr(layer, "activation", None)]):
        item.dtype = np.dtype(np.float64)
        item._buffers = {}
    for p in layer.parameters():
        p.value = p.value.astype(np.float64)
        p.grad = np.zeros_like(p.value)
    return layer


def _built_float64(layer: Layer, input_shape: tuple[int, ...], seed: int) -> Layer:
    """A float64 copy of ``layer``, built for ``input_shape`` if it was not (the original is untouched)."""
    if layer.built:
        return _as_float64(layer)
    layer = copy.deepcopy(layer)
    layer.build(input_shape, np.random.default_rng(seed), np.float64)
    return layer


def _prepare(obj: Any, x: np.ndarray, y: Any) -> tuple[Any, np.ndarray, Any]:
    x = np.array(x, dtype=np.float64)
    if isinstance(obj, Loss):
        return obj, x, y
    if isinstance(obj, Sequential):
        if obj.loss is None:
            raise ValueError("check_gradients on a model needs a compiled loss (model.compile(...))")
        if not obj.built:
            obj.build(x.shape[1:])
        model = _as_float64(obj)
        return model, x, model.loss.prepare_targets(y, model.output_dim, np.float64)
    if isinstance(obj, Layer):
        return _built_float64(obj, x.shape[1:], 0), x, None
    raise TypeError(f"check_gradients takes a Layer, a Loss or a Sequential model, got {obj!r}")


def _objective_and_grads(obj: Any, x: np.ndarray, y: Any, weights: np.ndarray | None
                         ) -> tuple[Callable[[], float], Callable[[], dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Return (f, analytic gradients, arrays to perturb) for any checkable object."""
    if isinstance(obj, Loss):
        def f() -> float:
            return obj.forward(x, y)

        def analytic() -> dict[str, np.ndarray]:
            obj.forward(x, y)
            return {"input": obj.backward().copy()}

        return f, analytic, {"input": x}
    if isinstance(obj, Sequential):
        params = obj.parameters()

        def f() -> float:
            return obj.loss.forward(obj.forward(x, training=True), y)

        def analytic() -> dict[str, np.ndarray]:
            f()
            dx = obj.backward(obj.loss.backward(), input_grad=True)
            return {"input": dx.copy(), **{p.name: p.grad.copy() for p in params}}

        return f, analytic, {"input": x, **{p.name: p.value for p in params}}
    params = obj.parameters()

    def f() -> float:
        return float(np.sum(obj.forward(x, training=True) * weights))

    def analytic() -> dict[str, np.ndarray]:
        obj.forward(x, training=True)
        obj.needs_input_grad = True
        dx = obj.backward(weights.copy())
        return {"input": dx.copy(), **{p.name: p.grad.copy() for p in params}}

    return f, analytic, {"input": x, **{p.name: p.value for p in params}}


def _compare(analytic: dict[str, np.ndarray], reference: dict[str, np.ndarray], rtol: float, atol: float,
             method: str) -> GradCheckResult:
    errors, ok = {}, True
    for name, ref in reference.items():
        got = analytic[name]
        if got.shape != ref.shape:
            errors[name] = float("inf")
            ok = False
            continue
        diff = np.abs(got - ref)
        errors[name] = float(diff.max()) if diff.size else 0.0
        ok = ok and bool(np.all(diff <= atol + rtol * np.abs(ref)))
    worst = max(errors, key=errors.get)
    return GradCheckResult(ok, errors[worst], worst, errors, method)


def check_gradients(obj: Any, x: np.ndarray, y: Any = None, eps: float = 1e-6, rtol: float = 1e-5,
                    atol: float = 1e-7, seed: int = 0) -> GradCheckResult:
    """Compare ``backward`` with float64 central differences, for the input and every parameter.

    Parameters
    ----------
    obj : Layer, Loss or Sequential
        Checked on a float64 copy; an unbuilt layer is built for ``x``.
    x : ndarray of shape (N, *input_shape)
        Inputs (for a loss: the predictions or logits, shape (N, D_out)).
    y : ndarray, optional
        Targets, for a loss or a compiled model.
    eps : float
        Step of the central difference ``(f(w + eps) - f(w - eps)) / (2 eps)``.
    rtol, atol : float
        An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    seed : int
        Seeds the random weighting ``R`` of a layer's output.

    Returns
    -------
    GradCheckResult
    """
    obj, x, y = _prepare(obj, x, y)
    weights = None
    if isinstance(obj, Layer):
        weights = np.random.default_rng(seed).standard_normal((x.shape[0], *obj.output_shape))
    f, analytic_fn, arrays = _objective_and_grads(obj, x, y, weights)
    analytic = analytic_fn()
    numeric = {}
    for name, arr in arrays.items():
        grad = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            f_plus = f()
            flat[i] = old - eps
            f_minus = f()
            flat[i] = old
            gflat[i] = (f_plus - f_minus) / (2 * eps)
        numeric[name] = grad
    return _compare(analytic, numeric, rtol, atol, "numerical")


def _symbols(sp: Any, prefix: str, shape: tuple[int, ...]) -> np.ndarray:
    """An object array of ``shape`` holding one real symbol per entry, ``x_0_1_2`` style."""
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = sp.Symbol("_".join([prefix, *map(str, index)]), real=True)
    return out


def check_symbolic(obj: Any, x: np.ndarray | None = None, y: Any = None, n: int = 2, d_in: int = 3,
                   rtol: float = 1e-7, atol: float = 1e-9, seed: int = 0,
                   input_shape: tuple[int, ...] | None = None) -> GradCheckResult:
    """Check ``backward`` against ``sympy.diff`` of the object's symbolic form.

    The layer's (or loss's) function is built from sympy symbols for every input
    and parameter entry (object arrays of any shape), differentiated with
    ``sympy.diff``, and evaluated with ``subs`` at the point ``x`` (and the current
    parameter values).

    Parameters
    ----------
    obj : Layer or Loss
        Keep it small: every entry becomes a symbol. An unbuilt layer is built
        for the default point's samples in float64.
    x : ndarray of shape (N, *input_shape), optional
        The point; by default random values in ``±[0.2, 1.5]`` (away from kinks).
    y : ndarray, optional
        Targets, for a loss (default: random integer labels).
    n, d_in : int
        Shape ``(n, d_in)`` of the default ``x``.
    input_shape : tuple of int, optional
        Per-sample shape of the default ``x`` instead of ``(d_in,)`` (images: ``(4, 4, 2)``).

    Returns
    -------
    GradCheckResult
    """
    import sympy as sp

    rng = np.random.default_rng(seed)
    sample_shape = tuple(input_shape) if input_shape is not None else (d_in,)
    if isinstance(obj, Layer):
        obj = _built_float64(obj, sample_shape if x is None else np.shape(x)[1:], seed)
        sample_shape = obj.input_shape
    elif not isinstance(obj, Loss):
        raise TypeError(f"check_symbolic takes a Layer or a Loss, got {obj!r}")
    if x is None:
        shape = (n, *sample_shape)
        x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    x = np.array(x, dtype=np.float64)
    x_sym = _symbols(sp, "x", x.shape)
    values = dict(zip(x_sym.ravel(), map(float, x.ravel())))

    if isinstance(obj, Loss):
        if y is None:  # labels for the softmax loss, values in [0, 1] for element-wise losses
            y = (rng.integers(0, x.shape[1], x.shape[0]) if isinstance(obj, SoftmaxCrossEntropy)
                 else rng.uniform(0.0, 1.0, x.shape))
        expr = obj.symbolic(sp, x_sym, y)
        obj.forward(x, y)
        analytic = {"input": obj.backward().copy()}
        targets = {"input": x_sym}
    else:
        params = obj.parameters()
        p_syms = [_symbols(sp, f"p{k}", p.shape) for k, p in enumerate(params)]
        for p, s in zip(params, p_syms):
            values.update(zip(s.ravel(), map(float, p.value.ravel())))
        out = np.asarray(obj.symbolic(sp, x_sym, *p_syms), dtype=object)
        weights = rng.standard_normal((x.shape[0], *obj.output_shape))
        if out.shape != weights.shape:
            raise ValueError(f"{obj!r}.symbolic returned shape {out.shape}, forward gives {weights.shape}")
        expr = sum(e * float(w) for e, w in zip(out.ravel(), weights.ravel()))
        obj.forward(x, training=True)
        obj.needs_input_grad = True
        dx = obj.backward(weights.copy())
        analytic = {"input": dx.copy(), **{p.name: p.grad.copy() for p in params}}
        targets = {"input": x_sym, **{p.name: s for p, s in zip(params, p_syms)}}

    # xreplace with exact Floats: one pass over the tree (subs re-simplifies as it goes: 5x slower on
    # BatchNormalization over images)
    point = {s: sp.Float(v) for s, v in values.items()}
    reference = {}
    for name, syms in targets.items():
        grad = np.array([float(sp.diff(expr, s).xreplace(point).evalf()) for s in syms.ravel()])
        reference[name] = grad.reshape(analytic[name].shape)
    return _compare(analytic, reference, rtol, atol, "symbolic")
