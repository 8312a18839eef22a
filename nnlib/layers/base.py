"""The layer contract: the :class:`Layer` base class and the registries of layers and activations.

Every layer maps a batch ``x`` of shape ``(N, *input_shape)`` to ``y`` of shape
``(N, *output_shape)``; the per-sample shapes are tuples (``(784,)`` for flat inputs,
``(28, 28, 1)`` for channels-last images), fixed by :meth:`Layer.build`.
``forward`` caches what ``backward`` needs (references, never copies of its input);
``backward(g)`` takes ``g = dL/dy`` and returns ``dL/dx``, overwriting the ``grad`` of
the layer's parameters. Outputs are written into buffers the layer owns and reuses
for the next call with the same shape, so the array returned by ``forward`` or
``backward`` is only valid until the layer's next call: copy it to keep it (the
model's ``predict`` does). A layer never writes into an array it was given.

Each layer also has a ``symbolic`` form, the same function written with sympy on
object arrays of symbols (any shape; :func:`elementwise` maps a scalar function),
which :func:`nnlib.gradcheck.check_symbolic` differentiates to check ``backward``,
and a ``derivative_text`` that :func:`nnlib.explain` shows. Layers with non-trainable
state expose it through ``get_state``/``set_state`` so model files keep it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._buffers import cached_buffer
from .._validation import check_shape, format_shape
from ..parameter import Parameter
from ..registry import Registry

__all__ = ["Layer", "registry", "activations", "get", "elementwise"]


class Layer:
    """Base class of all layers.

    Subclasses implement :meth:`build` (when they own parameters),
    :meth:`forward`, :meth:`backward` and :meth:`get_config`.

    Parameters
    ----------
    name : str, optional
    input_shape : int or tuple of int, optional
        The per-sample shape of the inputs, as Keras's ``input_shape=(28, 28, 1)``.
        On a model's first layer it lets the model build at once; elsewhere it is
        a check: building for another shape raises ValueError.

    Attributes
    ----------
    name : str or None
        Unique within a model (``dense_0``, ``relu_1``, ...); set by ``Sequential``.
    input_shape, output_shape : tuple of int or None
        Per-sample shapes, known once built.
    input_dim, output_dim : int or None
        The same for flat samples (``input_shape == (D,)``); None for images.
    needs_input_grad : bool
        False for the first trainable layer of a model: nobody uses dL/dx there,
        so ``backward`` skips that product and returns None.
    splits_batch : bool
        Class attribute, True for the layers whose passes split the batch over threads
        (Conv2D, the pooling layers): a model with one runs ``fit``, ``evaluate`` and
        ``predict`` in a parallel region (see :func:`nnlib.set_num_threads`).
    """

    splits_batch = False

    def __init__(self, name: str | None = None, input_shape: int | tuple[int, ...] | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self.name = name
        self.declared_input_shape = None if input_shape is None else check_shape(input_shape, "input_shape")
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype = np.dtype(np.float32)
        self.needs_input_grad = True
        self._buffers: dict = {}

    # -- construction -------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.output_shape is not None

    @property
    def input_dim(self) -> int | None:
        return _flat_width(self.input_shape)

    @property
    def output_dim(self) -> int | None:
        return _flat_width(self.output_shape)

    def build(self, input_shape: int | tuple[int, ...], rng: np.random.Generator,
              dtype: Any = np.float32) -> tuple[int, ...]:
        """Create parameters for samples of shape ``input_shape``; return the output shape.

        Subclasses with parameters extend it (``super().build`` first checks the shape
        and records both shapes and the dtype).
        """
        output_shape = self.compute_output_shape(input_shape)
        self.input_shape, self.output_shape = check_shape(input_shape, "input_shape"), output_shape
        self.dtype = np.dtype(dtype)
        return output_shape

    def compute_output_shape(self, input_shape: int | tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for ``input_shape``, without building (Keras's name).

        Raises ValueError for a shape the layer cannot take.
        """
        shape = check_shape(input_shape, "input_shape")
        if self.declared_input_shape is not None and shape != self.declared_input_shape:
            raise ValueError(f"{self!r} was declared with input_shape={self.declared_input_shape}, "
                             f"got samples of shape {shape}")
        return shape

    def parameter_shapes(self, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The shapes :meth:`parameters` will have once built for ``input_shape``, computed from the
        configuration alone (the model loader compares them with a file's arrays before building)."""
        return []

    def parameters(self) -> list[Parameter]:
        """Trainable parameters, in a fixed order (empty for activations)."""
        return []

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equal, unbuilt layer."""
        config: dict[str, Any] = {"name": self.name}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    def get_state(self) -> dict[str, np.ndarray]:
        """Non-trainable state a model file must keep besides the parameters (copies).

        Empty for most layers; BatchNormalization's running statistics, Dropout's
        generator position. Valid once built.
        """
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned (the layer must be built).

        Raises
        ------
        ValueError
            If the keys or shapes differ from those of :meth:`get_state`.
        """
        current = self.get_state()
        state = dict(state)
        if set(state) != set(current):
            raise ValueError(f"{self!r}.set_state expected keys {sorted(current)}, got {sorted(state)}")
        for key, value in current.items():
            arr = np.asarray(state[key])
            if arr.shape != value.shape:
                raise ValueError(f"{self!r}.set_state: {key} must have shape {value.shape}, got {arr.shape}")
        self._set_state({k: np.asarray(v) for k, v in state.items()})

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Write validated state (same keys and shapes as :meth:`get_state`)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    # -- computation --------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def symbolic(self, sp: Any, x: np.ndarray, *params: np.ndarray) -> np.ndarray:
        """The layer's function on an object array ``x`` of sympy expressions, shape
        ``(N, *input_shape)``, and object arrays of the parameters' shapes; returns an
        object array of shape ``(N, *output_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} has no symbolic form")

    # -- helpers ------------------------------------------------------------------
    def _buffer(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        """A layer-owned array for ``key`` and ``shape`` (default dtype: the layer's), reused across calls."""
        return cached_buffer(self._buffers, key, shape, dtype or self.dtype)

    def _check_input(self, x: np.ndarray) -> None:
        """ValueError unless ``x`` is an ndarray ``(N, *input_shape)`` (any ``(N, ...)`` before build)."""
        expected = self.input_shape
        if not isinstance(x, np.ndarray) or x.ndim < 2 or (expected is not None and x.shape[1:] != expected):
            shape = getattr(x, "shape", type(x).__name__)
            raise ValueError(f"{self!r} expected input of shape "
                             f"{format_shape(expected) if expected is not None else '(N, ...)'}, got {shape}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or ''})"

    #: whether get_state() is the same on every process of a data-parallel fit (checked at each epoch's end);
    #: Dropout's generator position is not: each process draws its own masks
    replicated_state: bool = True

    #: the attributes that hold scratch caches (dicts of buffers): never pickled or deep-copied
    _cache_attributes: tuple[str, ...] = ("_buffers",)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._cache_attributes:
            if name in state:
                state[name] = {}
        return state


def _flat_width(shape: tuple[int, ...] | None) -> int | None:
    return shape[0] if shape is not None and len(shape) == 1 else None


def elementwise(x: np.ndarray, fn: Any) -> np.ndarray:
    """``fn`` applied to every entry of an object array of sympy expressions (same shape)."""
    return np.frompyfunc(fn, 1, 1)(x)


#: every layer class, by name (model files and ``get`` look layers up here)
registry = Registry("layer", base=Layer)
#: the element-wise activations, by name (``Dense(activation="relu")``)
activations = Registry("activation", base=Layer)


def get(identifier: Any) -> Layer:
    """Resolve a layer name, class, instance or config dict."""
    return registry.get(identifier)
