"""The export rules of nnlib's layers: each layer's inference function written with ONNX's operators.

Conv, pooling and BatchNormalization take channels on axis 1 (``layout="channels_first"``); Dense, Flatten
and Reshape take nnlib's layout; the activations and Dropout take either. Conv and AveragePool run in
float32 in a float64 graph: ONNX Runtime has no float64 kernel for them.
"""

from __future__ import annotations

import numpy as np

from .. import _conv
from ..layers import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Layer,
    LeakyReLU,
    Linear,
    MaxPooling2D,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
)
from .graph import OnnxGraph, register

__all__: list[str] = []


def _activation(layer: Dense | Conv2D, graph: OnnxGraph, y: str) -> str:
    return y if layer.activation is None else graph.apply(layer.activation, y)


@register(Dense, "channels_last", float32_only=False)
def _dense(layer: Dense, graph: OnnxGraph, x: str) -> str:
    # y = x W + b is Gemm's A B + C, W already (D_in, D_out)
    w, b = graph.constant(layer.weight.value, "weight"), graph.constant(layer.bias.value, "bias")
    return _activation(layer, graph, graph.node("Gemm", [x, w, b]))


def _pads(layer: Conv2D | MaxPooling2D | AveragePooling2D, window: tuple[int, int], strides: tuple[int, int],
          dilation: tuple[int, int]) -> list[int]:
    """ONNX's ``[top, left, bottom, right]`` (x1_begin, x2_begin, x1_end, x2_end) of nnlib's padding: TF's
    "same" written out, an odd total's extra row/column at the bottom/right (auto_pad=SAME_UPPER would
    agree, but explicit pads mean the same to every runtime)."""
    (top, bottom), (left, right) = _conv.pads_2d(layer.input_shape[:2], window, strides, dilation, layer.padding)
    return [top, left, bottom, right]


@register(Conv2D, "channels_first", float32_only=True)
def _conv2d(layer: Conv2D, graph: OnnxGraph, x: str) -> str:
    # kernels (KH, KW, C_in, C_out) -> ONNX's (C_out, C_in, KH, KW)
    inputs = [x, graph.constant(layer.weight.value.transpose(3, 2, 0, 1), "weight")]
    if layer.bias is not None:
        inputs.append(graph.constant(layer.bias.value, "bias"))
    y = graph.node("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                   dilations=list(layer.dilation_rate),
                   pads=_pads(layer, layer.kernel_size, layer.strides, layer.dilation_rate))
    # A ReLU that nnlib moved past the next max pooling (activation_moved_past_pooling) stays here: the two
    # commute, so the graph keeps the model's own order.
    return _activation(layer, graph, y)


@register(MaxPooling2D, "channels_first", float32_only=False)
def _max_pool(layer: MaxPooling2D, graph: OnnxGraph, x: str) -> str:
    # padding cells never win a max, in ONNX as in nnlib
    return graph.node("MaxPool", [x], kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                      pads=_pads(layer, layer.pool_size, layer.strides, (1, 1)))


@register(AveragePooling2D, "channels_first", float32_only=True)
def _avg_pool(layer: AveragePooling2D, graph: OnnxGraph, x: str) -> str:
    # count_include_pad=0: a window over the padding is the mean of its real cells, as in nnlib and Keras
    return graph.node("AveragePool", [x], kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                      pads=_pads(layer, layer.pool_size, layer.strides, (1, 1)), count_include_pad=0)


@register(GlobalAveragePooling2D, "channels_first", float32_only=False)
def _global_avg_pool(layer: GlobalAveragePooling2D, graph: OnnxGraph, x: str) -> str:
    # ReduceMean gives (N, C) at once and has a float64 kernel in ONNX Runtime (GlobalAveragePool has not)
    return graph.node("ReduceMean", [x], rank=2, axes=[2, 3], keepdims=0)


@register(BatchNormalization, "channels_first", float32_only=False)
def _batch_norm(layer: BatchNormalization, graph: OnnxGraph, x: str) -> str:
    # inference: (x - moving_mean) / sqrt(moving_variance + eps) * gamma + beta, per channel on axis 1
    # (the features of flat samples; for any other rank, nnlib's last axis moved there). ONNX's epsilon is
    # a float32 attribute: a float64 graph adds eps to the variance itself, as nnlib does, to keep 1e-16.
    variance, eps = layer.moving_variance, float(layer.eps)
    if graph.dtype == np.float64:
        variance, eps = variance + layer.eps, 0.0
    params = [graph.constant(value, name) for value, name in (
        (layer.gamma.value, "gamma"), (layer.beta.value, "beta"),
        (layer.moving_mean, "moving_mean"), (variance, "moving_variance"))]
    return graph.node("BatchNormalization", [x, *params], epsilon=eps)


@register(Flatten, "channels_last", float32_only=False)
def _flatten(layer: Flatten, graph: OnnxGraph, x: str) -> str:
    return graph.node("Flatten", [x], rank=2, axis=1)  # x channels-last: nnlib's (H, W, C) order


@register(Reshape, "channels_last", float32_only=False)
def _reshape(layer: Reshape, graph: OnnxGraph, x: str) -> str:
    shape = graph.constant([0, *layer.output_shape], "shape")  # 0 keeps the (dynamic) batch size
    return graph.node("Reshape", [x, shape], rank=len(layer.output_shape) + 1)


@register(Dropout, "any", float32_only=False)
@register(Linear, "any", float32_only=False)
def _identity(layer: Layer, graph: OnnxGraph, x: str) -> str:
    return x  # Dropout at inference and Linear: no node at all


@register(LeakyReLU, "any", float32_only=False)
def _leaky_relu(layer: LeakyReLU, graph: OnnxGraph, x: str) -> str:
    return graph.node("LeakyRelu", [x], alpha=float(layer.alpha))


def _elementwise(op_type: str):
    def rule(layer: Layer, graph: OnnxGraph, x: str) -> str:
        return graph.node(op_type, [x])

    return rule


# A ReLU layer that nnlib moved past the next max pooling (moved_past_pooling) is exported where it stands.
register(ReLU, "any", float32_only=False)(_elementwise("Relu"))
register(Sigmoid, "any", float32_only=False)(_elementwise("Sigmoid"))
register(Tanh, "any", float32_only=False)(_elementwise("Tanh"))
