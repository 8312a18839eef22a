"""The layer contract: the :class:`Layer` base class and the registries of layers and activations.

Every layer maps a batch ``x`` of shape ``(N, D_in)`` to ``y`` of shape ``(N, D_out)``.
``forward`` caches what ``backward`` needs (references, never copies of its input);
``backward(g)`` takes ``g = dL/dy`` and returns ``dL/dx``, overwriting the ``grad`` of
the layer's parameters. Outputs are written into buffers the layer owns and reuses
for the next call with the same shape, so the array returned by ``forward`` or
``backward`` is only valid until the layer's next call: copy it to keep it (the
model's ``predict`` does). A layer never writes into an array it was given.

Each layer also has a ``symbolic`` form, the same function written with sympy,
which :func:`nnlib.gradcheck.check_symbolic` differentiates to check ``backward``,
and a ``derivative_text`` that :func:`nnlib.explain` shows. Layers with non-trainable
state expose it through ``get_state``/``set_state`` so model files keep it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._buffers import cached_buffer
from ..parameter import Parameter
from ..registry import Registry

__all__ = ["Layer", "registry", "activations", "get"]


class Layer:
    """Base class of all layers.

    Subclasses implement :meth:`build` (when they own parameters),
    :meth:`forward`, :meth:`backward` and :meth:`get_config`.

    Attributes
    ----------
    name : str or None
        Unique within a model (``dense_0``, ``relu_1``, ...); set by ``Sequential``.
    input_dim, output_dim : int or None
        Known once built.
    needs_input_grad : bool
        False for the first trainable layer of a model: nobody uses dL/dx there,
        so ``backward`` skips that product and returns None.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self.name = name
        self.input_dim: int | None = None
        self.output_dim: int | None = None
        self.dtype: np.dtype = np.dtype(np.float32)
        self.needs_input_grad = True
        self._buffers: dict = {}

    # -- construction -------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.output_dim is not None

    def build(self, input_dim: int, rng: np.random.Generator, dtype: Any = np.float32) -> int:
        """Create parameters for inputs of width ``input_dim``; return the output width."""
        self.input_dim = self.output_dim = int(input_dim)
        self.dtype = np.dtype(dtype)
        return self.output_dim

    def output_dim_for(self, input_dim: int) -> int:
        """The output width for inputs of width ``input_dim``, without building."""
        return input_dim

    def parameters(self) -> list[Parameter]:
        """Trainable parameters, in a fixed order (empty for activations)."""
        return []

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equal, unbuilt layer."""
        return {"name": self.name}

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

    def symbolic(self, sp: Any, x: Any, *params: Any) -> Any:
        """The layer's function on a sympy Matrix ``x`` of shape (N, D_in)."""
        raise NotImplementedError(f"{type(self).__name__} has no symbolic form")

    # -- helpers ------------------------------------------------------------------
    def _buffer(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        """A layer-owned array for ``key`` and ``shape`` (default dtype: the layer's), reused across calls."""
        return cached_buffer(self._buffers, key, shape, dtype or self.dtype)

    def _check_input(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.ndim != 2 or (
            self.input_dim is not None and x.shape[1] != self.input_dim
        ):
            shape = getattr(x, "shape", type(x).__name__)
            expected = f"(N, {self.input_dim})" if self.input_dim is not None else "(N, D)"
            raise ValueError(f"{self!r} expected input of shape {expected}, got {shape}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or ''})"

    def __getstate__(self) -> dict[str, Any]:
        # Buffers are caches: never pickle or deep-copy them.
        state = self.__dict__.copy()
        state["_buffers"] = {}
        return state


#: every layer class, by name (model files and ``get`` look layers up here)
registry = Registry("layer", base=Layer)
#: the element-wise activations, by name (``Dense(activation="relu")``)
activations = Registry("activation", base=Layer)


def get(identifier: Any) -> Layer:
    """Resolve a layer name, class, instance or config dict."""
    return registry.get(identifier)
