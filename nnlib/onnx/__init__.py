"""Export a built :class:`~nnlib.Sequential` to ONNX, the format ONNX Runtime, TensorRT and OpenVINO read
(and Netron draws).

>>> model.export("model.onnx")                         # doctest: +SKIP
>>> import onnxruntime                                  # doctest: +SKIP
>>> session = onnxruntime.InferenceSession("model.onnx")                   # doctest: +SKIP
>>> probabilities = session.run(None, {"input": x.astype("float32")})[0]  # doctest: +SKIP

``probabilities`` is ``model.predict(x)`` to float32 rounding (the tests hold them to 1e-5).

The graph
---------
- One input, ``"input"`` of shape ``(N, *input_shape)``: the batch in nnlib's own layout, channels-last
  ``(N, H, W, C)`` for images, in the graph's float dtype; ``N`` is dynamic (the dimension named "N").
- One output, ``"output"`` of shape ``(N, *output_shape)``: what ``model.predict`` returns, softmax
  probabilities for softmax cross-entropy, sigmoid probabilities for binary cross-entropy, raw values for
  MSE or an uncompiled model. Both carry these words as their ``doc_string``; :func:`describe` prints them.
- Opset 17 (ONNX 1.12, :data:`OPSET`) with the smallest IR version that holds it, so runtimes of the last
  years load it.
- ONNX's Conv and pooling take NCHW: one Transpose moves the channels to axis 1 where a layer first needs
  them, and one moves them back before Flatten, Reshape or the output; the layers in between share that
  layout. Every layer's output is declared with nnlib's shape (``value_info``), and the file passes
  ``onnx.checker.check_model(model, full_check=True)``, which infers every shape and compares.

float64
-------
A float64 model exports as a float64 graph (``dtype="float32"`` casts its weights for an all-float32
one). ONNX Runtime has no float64 kernels for Conv and AveragePool: in a float64 graph those two run in
float32 between Cast nodes, with float32 copies of their weights, and the export says so with a
``UserWarning`` naming the layers; everything else, MaxPool included, stays float64. Run float64 graphs in
ONNX Runtime 1.18 or later: 1.17 and before fuse a Gemm and its activation into a kernel that has no
float64 version (``graph_optimization_level=ORT_ENABLE_BASIC`` in the SessionOptions avoids that fusion).

Your own layers
---------------
A layer class without a rule raises TypeError naming it. A rule is a function ``rule(layer, graph, x) ->
y`` registered for the exact class (a subclass may compute something else, so it needs its own, or
:func:`export_like` when it computes what its parent does):
``x`` is the name of the layer's input tensor, ``y`` the name of its output, and ``graph`` an
:class:`OnnxGraph` to add nodes and weights to:

>>> import nnlib as nn, nnlib.onnx
>>> class Swish(nn.Layer):                             # y = x sigmoid(beta x)
...     def __init__(self, beta=1.0, **kwargs):
...         super().__init__(**kwargs)
...         self.beta = beta
...     def forward(self, x, training=False):
...         return x * nn.functional.sigmoid(self.beta * x)
>>> @nnlib.onnx.register_export(Swish)
... def _swish(layer, graph, x):
...     beta = graph.constant([layer.beta], "beta")          # in the graph's float dtype
...     gate = graph.node("Sigmoid", [graph.node("Mul", [x, beta])])
...     return graph.node("Mul", [x, gate])

``x`` comes in nnlib's layout unless the rule asks otherwise (``layout="channels_first"``: the channels on
axis 1, NCHW for images; ``"any"``: as it comes, for element-wise layers), and ``y`` must be in that
layout with the layer's ``output_shape`` (the checker compares).
"""

from .convert import MISSING_ONNX, OPSET, describe, export, to_onnx
from .graph import INPUT_NAME, OUTPUT_NAME, OnnxGraph, export_like, register_export

__all__ = ["OPSET", "INPUT_NAME", "OUTPUT_NAME", "MISSING_ONNX", "OnnxGraph", "register_export", "export_like",
           "to_onnx", "export", "describe"]
