"""A Sequential model to an ONNX ModelProto: its layers through their rules, then what ``predict`` adds
(the loss's softmax or sigmoid), checked by onnx's full checker."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .._validation import check_float_dtype, check_path, format_shape
from ..losses import BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from . import rules  # noqa: F401  (registers the rules of nnlib's layers)
from .graph import INPUT_NAME, OUTPUT_NAME, OnnxGraph, rule_for

__all__ = ["OPSET", "MISSING_ONNX", "to_onnx", "export", "describe"]

#: ONNX 1.12's opset (2022): every operator used here has had its current meaning since, and the
#: runtimes of the last years load it
OPSET = 17
MISSING_ONNX = 'exporting to ONNX needs the onnx package: pip install "nnlib[onnx]"'


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(MISSING_ONNX) from exc
    return onnx


def _prediction(loss: Loss | None) -> tuple[str | None, str]:
    """(the ONNX operator of ``loss.transform``, None for raw outputs; the words for what the output holds)."""
    transform = getattr(type(loss), "transform", None)
    if loss is None or transform is Loss.transform:
        return None, "raw outputs, as model.predict returns them"
    if transform is SoftmaxCrossEntropy.transform:
        return "Softmax", "class probabilities, the softmax of the logits, as model.predict returns them"
    if transform is BinaryCrossEntropy.transform:
        return "Sigmoid", "probabilities, the sigmoid of the logits, as model.predict returns them"
    raise TypeError(f"the model's loss {loss!r} turns outputs into predictions with its own transform(), which "
                    "has no ONNX export rule")


def _input_meaning(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"a batch of flat samples of {shape[0]} features"
    if len(shape) == 3:
        channels = f"{shape[2]} channel" + ("s" if shape[2] != 1 else "")
        return f"a batch of {shape[0]}x{shape[1]} images with {channels}, channels-last (N, H, W, C)"
    return f"a batch of samples of shape {shape}, as model.predict takes them"


def to_onnx(model: Any, dtype: Any = None) -> Any:
    """The ONNX graph of ``model.predict``, checked with ``onnx.checker.check_model(full_check=True)``.

    Parameters
    ----------
    model : Sequential
        A built model (fitted, loaded, or after ``model.build(input_shape)``).
    dtype : {None, "float32", "float64"}, default None
        The float dtype of the graph's input, output and weights; None is the model's. In a float64 graph,
        Conv2D and AveragePooling2D run in float32 (ONNX Runtime has no float64 kernel for them), with a
        UserWarning naming them.

    Returns
    -------
    onnx.ModelProto
        Opset :data:`OPSET`; input ``"input"`` of shape ``(N, *model.input_shape)``, output ``"output"``
        of shape ``(N, *model.output_shape)``, N dynamic.

    Raises
    ------
    ValueError
        If the model is not built, or the graph fails the checker (a rule built a wrong graph).
    TypeError
        If a layer (named) or the loss's transform has no export rule.
    ImportError
        Without the onnx package (``pip install "nnlib[onnx]"``).
    """
    if not hasattr(model, "layers") or not hasattr(model, "built"):
        raise TypeError(f"model must be an nnlib Sequential, got {type(model).__name__}")
    if not model.built:
        raise ValueError("cannot export a model that is not built: fit it or call build(input_shape) first")
    dtype = model.dtype if dtype is None else check_float_dtype(dtype, "dtype")
    op, meaning = _prediction(model.loss)
    if op is not None and len(model.output_shape) != 1:
        raise ValueError(f"the model's outputs have shape {format_shape(model.output_shape)}: {op} needs flat "
                         "(N, D) outputs")
    for layer in model.layers:
        rule_for(layer)  # a layer without a rule is named before any work
    onnx = _import_onnx()
    helper = onnx.helper
    graph = OnnxGraph(onnx, dtype, len(model.input_shape) + 1)
    x = INPUT_NAME
    for layer in model.layers:
        x = graph.apply(layer, x)
    graph.scope = "output"
    x = graph.convert(x, "channels_last")
    if op is not None:
        x = graph.node(op, [x], axis=-1) if op == "Softmax" else graph.node(op, [x])
    graph.name_output(x)
    _warn_float32_layers(model, graph)

    elem = graph.tensor_type(graph.dtype)
    inputs = [helper.make_tensor_value_info(INPUT_NAME, elem, ["N", *model.input_shape],
                                            doc_string=_input_meaning(model.input_shape))]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, elem, ["N", *model.output_shape], doc_string=meaning)]
    body = helper.make_graph(graph.nodes, model.name, inputs, outputs, graph.initializers,
                             value_info=graph.value_info)
    opset = [helper.make_opsetid("", OPSET)]
    proto = helper.make_model(body, opset_imports=opset, ir_version=helper.find_min_ir_version_for(opset),
                              producer_name="nnlib", producer_version=_version(),
                              doc_string=f"nnlib {model!r}, loss {model.loss!r}")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValueError(f"the ONNX graph of model {model.name!r} fails onnx's checker: {exc}") from exc
    return proto


def _warn_float32_layers(model: Any, graph: OnnxGraph) -> None:
    if graph.dtype == np.float32:
        return
    names = [f"{layer.name} ({type(layer).__name__})" for layer in model.layers if rule_for(layer).float32_only]
    if names:
        warnings.warn(f"ONNX Runtime has no float64 Conv or AveragePool: in this float64 graph {', '.join(names)} "
                      "run in float32 between Cast nodes (the other layers in float64); pass dtype='float32' for "
                      "an all-float32 graph", UserWarning, stacklevel=3)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("nnlib")
    except metadata.PackageNotFoundError:
        return "unknown"


def export(model: Any, path: str | os.PathLike[str], dtype: Any = None) -> Any:
    """Write :func:`to_onnx` ``(model, dtype)`` to ``path`` and return the ModelProto (``model.export(path)``
    calls this)."""
    path = check_path(path, "path")
    proto = to_onnx(model, dtype)
    _import_onnx().save_model(proto, path)
    return proto


def describe(proto: Any) -> str:
    """Two lines naming an exported graph's input and output with their dtypes, shapes and meaning::

        input  'input': float32 (N, 28, 28, 1), a batch of 28x28 images with 1 channel, channels-last ...
        output 'output': float32 (N, 10), class probabilities, the softmax of the logits, as model.predict ...
    """
    onnx = _import_onnx()
    lines = []
    for kind, value in (("input", proto.graph.input[0]), ("output", proto.graph.output[0])):
        tensor = value.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        lines.append(f"{kind:<6} {value.name!r}: {dtype} ({', '.join(dims)}), {value.doc_string}")
    return "\n".join(lines)
