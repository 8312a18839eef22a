"""The graph an export builds (:class:`OnnxGraph`) and the rules that put each layer class into it
(:func:`register_export`, :func:`export_like`).

The graph follows every tensor's layout and dtype, so that a rule gets its input as it asked and the
Transpose and Cast nodes go only where a layout or dtype changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._validation import check_choice
from ..layers import Layer

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "LAYOUTS", "OnnxGraph", "register_export", "export_like", "rule_for"]

INPUT_NAME = "input"
OUTPUT_NAME = "output"
LAYOUTS = ("channels_last", "channels_first", "any")


class Rule(NamedTuple):
    fn: Callable[[Any, OnnxGraph, str], str]
    layout: str
    float32_only: bool  # ONNX Runtime has no float64 kernel for its op: it runs in float32 in a float64 graph


_RULES: dict[type, Rule] = {}


def register_export(layer_class: type, layout: str = "channels_last") -> Callable:
    """Decorator registering ``rule(layer, graph, x) -> y`` as the export of ``layer_class`` (exactly).

    Parameters
    ----------
    layer_class : subclass of Layer
    layout : {"channels_last", "channels_first", "any"}, default "channels_last"
        The layout of ``x`` and ``y``: nnlib's ``(N, *shape)``; the last axis moved to axis 1 (NCHW for
        images; nnlib's own for flat samples); or as it comes, for element-wise layers.

    Returns
    -------
    callable
        The decorator; it returns the rule unchanged. Registering a class again replaces its rule.
        :mod:`nnlib.onnx` shows an example.
    """
    return register(layer_class, layout, float32_only=False)


def register(layer_class: type, layout: str, float32_only: bool) -> Callable:
    """:func:`register_export` with the float32 flag of the built-in Conv2D and AveragePooling2D rules."""
    if not (isinstance(layer_class, type) and issubclass(layer_class, Layer)):
        raise TypeError(f"register_export: layer_class must be a subclass of nnlib.Layer, got {layer_class!r}")
    check_choice(layout, "register_export: layout", LAYOUTS)

    def decorator(rule: Callable) -> Callable:
        if not callable(rule):
            raise TypeError(f"register_export({layer_class.__name__}) decorates a function, got {rule!r}")
        _RULES[layer_class] = Rule(rule, layout, float32_only)
        return rule

    return decorator


def export_like(layer_class: type, parent_class: type) -> None:
    """Export ``layer_class``, a subclass of ``parent_class`` that computes the same function (a new default,
    a new name), with ``parent_class``'s rule: ``export_like(MyDense, nn.Dense)``."""
    if not (isinstance(parent_class, type) and parent_class in _RULES):
        raise TypeError(f"export_like: parent_class must be a layer class with an export rule, got {parent_class!r}")
    if not (isinstance(layer_class, type) and issubclass(layer_class, parent_class)):
        raise TypeError(f"export_like: layer_class must subclass {parent_class.__name__}, got {layer_class!r}")
    _RULES[layer_class] = _RULES[parent_class]


def rule_for(layer: Layer) -> Rule:
    """The rule of ``type(layer)``, or a TypeError naming the layer and how to give it one."""
    rule = _RULES.get(type(layer))
    if rule is not None:
        return rule
    cls = type(layer).__name__
    what = f"layer {layer.name!r} ({cls})" if layer.name else f"{layer!r} ({cls})"
    parent = next((c for c in type(layer).__mro__[1:] if c in _RULES), None)
    hint = (f"if it computes what {parent.__name__} does, call nnlib.onnx.export_like({cls}, {parent.__name__}); "
            "otherwise write" if parent is not None else "write")
    raise TypeError(f"{what} has no ONNX export rule: {hint} one with @nnlib.onnx.register_export({cls}) "
                    "(see the nnlib.onnx docstring)")


class _Tensor(NamedTuple):
    rank: int  # with the batch axis
    channels_first: bool  # nnlib's last axis moved to axis 1 (NCHW); only for rank >= 3
    dtype: np.dtype


class OnnxGraph:
    """The graph an export builds; every rule gets it to add its nodes and weights.

    Parameters
    ----------
    onnx : module
        The onnx package (imported by the export, never by ``import nnlib``).
    dtype : numpy.dtype
        The graph's float dtype.
    input_rank : int
        The rank of the input ``"input"``, batch axis included, in nnlib's layout.

    Attributes
    ----------
    dtype : numpy.dtype
        The float dtype of the tensor a rule gets and of the constants it adds: the graph's, or float32 in
        the rules of layers that ONNX Runtime runs in float32 only (Conv2D, AveragePooling2D).
    scope : str
        The name of the layer being exported; nodes and constants are named ``scope/what``.
    nodes, initializers, value_info : list
        What ``onnx.helper.make_graph`` takes.
    """

    def __init__(self, onnx: Any, dtype: np.dtype, input_rank: int) -> None:
        self._onnx = onnx
        self.graph_dtype = self.dtype = np.dtype(dtype)
        self.scope = ""
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.value_info: list[Any] = []
        self._info = {INPUT_NAME: _Tensor(input_rank, False, self.dtype)}
        self._declared: set[str] = set()
        self._names = {INPUT_NAME, OUTPUT_NAME}

    def _unique(self, name: str) -> str:
        name = f"{self.scope}/{name}" if self.scope else name
        unique, k = name, 1
        while unique in self._names:
            unique, k = f"{name}_{k}", k + 1
        self._names.add(unique)
        return unique

    def tensor_type(self, dtype: Any) -> int:
        """ONNX's element type (``TensorProto.FLOAT``, ...) of a NumPy dtype."""
        return self._onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def constant(self, value: Any, name: str) -> str:
        """Add ``value`` as a weight (an initializer) named ``scope/name``; return its unique name.
        Floats are stored in :attr:`dtype`, integers as int64."""
        array = np.asarray(value)
        array = array.astype(self.dtype if array.dtype.kind == "f" else np.int64)
        unique = self._unique(name)
        self.initializers.append(self._onnx.numpy_helper.from_array(np.ascontiguousarray(array), unique))
        return unique

    def node(self, op_type: str, inputs: list[str], name: str | None = None, *, rank: int | None = None,
             **attributes: Any) -> str:
        """Add one node of ONNX's ``op_type`` with ``attributes``; return the name of its one output.

        The output is taken to have the first input's layout and dtype, and its rank unless ``rank``
        (batch axis included) is given."""
        out = self._unique(name or op_type)
        self.nodes.append(self._onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attributes))
        info = self._info.get(inputs[0]) if inputs else None
        info = info or _Tensor(2, False, self.dtype)
        rank = rank or info.rank
        self._info[out] = info._replace(rank=rank, channels_first=info.channels_first and rank >= 3)
        return out

    def convert(self, x: str, layout: str = "channels_last", dtype: Any = None) -> str:
        """``x`` in ``layout`` (see :func:`register_export`) and ``dtype`` (None: :attr:`dtype`), through a
        Transpose and a Cast where needed."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        info = self._info[x]
        if layout != "any" and info.rank >= 3 and info.channels_first != (layout == "channels_first"):
            r = info.rank
            perm = [0, r - 1, *range(1, r - 1)] if layout == "channels_first" else [0, *range(2, r), 1]
            x = self.node("Transpose", [x], "to_nchw" if layout == "channels_first" else "to_nhwc", perm=perm)
            self._info[x] = info = info._replace(channels_first=not info.channels_first)
        if info.dtype != dtype:
            x = self.node("Cast", [x], f"to_{dtype.name}", to=self.tensor_type(dtype))
            self._info[x] = info._replace(dtype=dtype)
        return x

    def _declare(self, x: str, shape: tuple[int, ...]) -> None:
        """Declare ``x``'s shape, nnlib's per-sample ``shape`` in ``x``'s layout, for the checker to compare."""
        if x in self._declared or x == INPUT_NAME:
            return
        self._declared.add(x)
        info = self._info[x]
        dims = (shape[-1], *shape[:-1]) if info.channels_first else shape
        self.value_info.append(self._onnx.helper.make_tensor_value_info(x, self.tensor_type(info.dtype),
                                                                        ["N", *dims]))

    def apply(self, layer: Layer, x: str) -> str:
        """Add ``layer`` (built) after tensor ``x`` and return its output tensor; a rule calls it for a
        sublayer, as Dense's rule for its activation."""
        rule = rule_for(layer)
        scope, dtype = self.scope, self.dtype
        self.scope = layer.name or f"{scope}/{getattr(layer, 'registered_name', type(layer).__name__.lower())}"
        self.dtype = np.dtype(np.float32) if rule.float32_only else self.graph_dtype
        try:
            x = self.convert(x, rule.layout)
            y = rule.fn(layer, self, x)
            if not isinstance(y, str) or y not in self._info:
                raise TypeError(f"the ONNX export rule of {layer!r} must return the name of a tensor of the graph "
                                f"(what graph.node(...) returns, or its input), got {y!r}")
            rank = len(layer.output_shape) + 1
            info = self._info[y]
            self._info[y] = info._replace(rank=rank, channels_first=info.channels_first and rank >= 3)
            y = self.convert(y, rule.layout, self._info[y].dtype)  # a sublayer may have left another layout
            self._declare(y, layer.output_shape)
        finally:
            self.scope, self.dtype = scope, dtype
        return y

    def name_output(self, x: str) -> None:
        """Call tensor ``x`` ``"output"`` (an Identity when no node made it: a model of Dropout alone)."""
        if x == INPUT_NAME:
            self.nodes.append(self._onnx.helper.make_node("Identity", [x], [OUTPUT_NAME], name=OUTPUT_NAME))
            return
        self.value_info[:] = [v for v in self.value_info if v.name != x]  # the graph's output declares it
        for node in self.nodes:
            node.input[:] = [OUTPUT_NAME if name == x else name for name in node.input]
            node.output[:] = [OUTPUT_NAME if name == x else name for name in node.output]
