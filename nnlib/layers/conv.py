"""Conv2D: 2-D convolution of channels-last images, ``y = activation(conv(x, weight) + bias)``.

The arithmetic lives in :mod:`nnlib._conv` (a patch matrix and one BLAS product per
pass); this module holds the layer: arguments, shapes, parameters, the symbolic form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _conv
from .._validation import check_choice, check_pair, check_positive_int, check_shape, format_shape
from ..parameter import Parameter
from .affine import AffineLayer
from .base import Layer, registry

__all__ = ["Conv2D", "check_image_batch", "check_image_shape", "check_padding", "spatial_output_shape"]


def check_padding(padding: Any, owner: str) -> str:
    """``"valid"`` or ``"same"`` (any case, as Keras lowercases it)."""
    if not isinstance(padding, str):
        raise TypeError(f"{owner}: padding must be 'valid' or 'same', got {padding!r}")
    return check_choice(padding.lower(), f"{owner}: padding", ("valid", "same"))


def check_image_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(H, W, C)``, or a ValueError that says how to get there from flat or channel-less samples."""
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        hint = f"add the channel axis: nn.Reshape({shape + (1,)}) first, or x[..., None]"
    elif len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        hint = f"reshape them first, e.g. nn.Reshape(({side}, {side}, 1))"
    else:
        hint = "reshape them first with nn.Reshape((H, W, C))"
    raise ValueError(f"{layer!r} takes images of shape (H, W, C), got samples of shape {shape}: {hint}")


def check_image_batch(layer: Layer, x: Any) -> None:
    """The hint of :func:`check_image_shape` for a batch of flat or channel-less samples given to ``layer``
    (other wrong inputs are left to ``Layer._check_input``)."""
    if isinstance(x, np.ndarray) and x.ndim in (2, 3):
        check_image_shape(layer, x.shape[1:])


def spatial_output_shape(layer: Layer, shape: tuple[int, int, int], kernel: tuple[int, int],
                         strides: tuple[int, int], dilation: tuple[int, int], padding: str,
                         what: str = "kernel") -> tuple[int, int]:
    """``(OH, OW)`` of a sliding window over ``shape``; a window larger than a "valid" input is a ValueError
    naming the layer and both shapes."""
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if padding == "valid" and (extent[0] > shape[0] or extent[1] > shape[1]):
        dilated = f" (dilated to {extent[0]}x{extent[1]})" if extent != tuple(kernel) else ""
        raise ValueError(f"{layer!r}: the {what} {kernel[0]}x{kernel[1]}{dilated} is larger than its input of "
                         f"{shape[0]}x{shape[1]} (samples of shape {shape}) with padding='valid'; use "
                         "padding='same' or a smaller " + what)
    return tuple(_conv.conv_output_size(size, k, s, d, padding)  # type: ignore[return-value]
                 for size, k, s, d in zip(shape[:2], kernel, strides, dilation))


@registry.register("conv2d", "conv_2d")
class Conv2D(AffineLayer):
    """2-D convolution over ``(N, H, W, C_in)`` images, Keras's ``Conv2D``.

    ``y[n, i, j, f] = sum_{a, b, c} x_pad[n, i s_h + a d_h, j s_w + b d_w, c] weight[a, b, c, f] + bias[f]``
    (a cross-correlation, as in every framework), then the activation.

    Parameters
    ----------
    filters : int
        C_out, the number of output channels.
    kernel_size : int or (int, int)
        (KH, KW).
    strides : int or (int, int), default 1
    padding : {"valid", "same"}, default "valid"
        "valid" uses no padding and drops the positions where the kernel does not fit;
        "same" pads with zeros to an output of ``ceil(in / stride)``, the extra row or
        column of an odd total padding at the bottom/right (Keras/TensorFlow).
    dilation_rate : int or (int, int), default 1
        Spacing between kernel taps; the kernel covers ``d (k - 1) + 1`` pixels.
    activation : str, Layer or None
        Applied after the convolution, as in ``Dense``.
    use_bias : bool, default True
    weight_init : str, Initializer or None
        None chooses He normal when ReLU or LeakyReLU follows (this layer's activation
        or the next layer), Glorot uniform otherwise; fan-in is ``KH KW C_in``.
    bias_init : str or Initializer, default "zeros"
    input_shape : (H, W, C_in), optional
    name : str, optional

    Attributes
    ----------
    weight : Parameter of shape (KH, KW, C_in, C_out)
        Keras's kernel layout (PyTorch's is ``(C_out, C_in, KH, KW)``).
    bias : Parameter of shape (C_out,), or None with ``use_bias=False``

    Notes
    -----
    Inside a model, right before a 2x2, stride-2 pooling that adds no padding (and with no
    activation, or a ReLU the max pooling takes over), the layer computes only the outputs the
    pooling reads, as window-major blocks ``(N, 2, 2, OH//2, OW//2, C_out)``: the model's outputs
    and gradients are the same, but what this layer's ``forward`` returns during ``model.forward``
    is in that layout. Called alone (``layer.forward(x)``, as ``explain`` does) it returns
    ``(N, OH, OW, C_out)``.
    """

    splits_batch = True
    _cache_attributes = ("_buffers", "_pooled_buffers")
    derivative_text = ("dW = sum over positions of patch^T g, db = sum of g over batch and positions, "
                       "dx = the patches of g W^T added back where they came from (col2im)")

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], strides: int | tuple[int, int] = 1,
                 padding: str = "valid", dilation_rate: int | tuple[int, int] = 1,
                 activation: str | Layer | None = None, use_bias: bool = True, weight_init: Any = None,
                 bias_init: Any = "zeros", input_shape: tuple[int, int, int] | None = None,
                 name: str | None = None) -> None:
        super().__init__(activation, weight_init, bias_init, name, input_shape)
        self.filters = check_positive_int(filters, "Conv2D: filters")
        self.kernel_size = check_pair(kernel_size, "Conv2D: kernel_size")
        self.strides = check_pair(strides, "Conv2D: strides")
        self.padding = check_padding(padding, "Conv2D")
        self.dilation_rate = check_pair(dilation_rate, "Conv2D: dilation_rate")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"Conv2D: use_bias must be True or False, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        #: set by Sequential when this layer's activation is ReLU and MaxPooling2D comes next: the pooling
        #: applies the ReLU to its 4x smaller output instead (they commute, gradients included)
        self.activation_moved_past_pooling = False
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        self._pooled_buffers: dict = {}  # forward_pooled's scratch, apart from the training pass's buffers
        if self.declared_input_shape is not None:
            self.compute_output_shape(self.declared_input_shape)

    def compute_output_shape(self, input_shape):
        shape = check_image_shape(self, super().compute_output_shape(input_shape))
        oh, ow = spatial_output_shape(self, shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return (oh, ow, self.filters)

    def parameter_shapes(self, input_shape):
        self.compute_output_shape(input_shape)
        kernel = (*self.kernel_size, check_shape(input_shape, "input_shape")[-1], self.filters)
        return [kernel, (self.filters,)] if self.use_bias else [kernel]

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        shapes = self.parameter_shapes(self.input_shape)
        init = self._weight_initializer()
        prefix = f"{self.name}/" if self.name else ""
        self.weight = Parameter(np.ascontiguousarray(init(shapes[0], rng, self.dtype), dtype=self.dtype),
                                prefix + "weight")
        if self.use_bias:
            self.bias = Parameter(np.ascontiguousarray(self.bias_init(shapes[1], rng, self.dtype), dtype=self.dtype),
                                  prefix + "bias")
        if self.activation is not None:
            self.activation.build(self.output_shape, rng, self.dtype)
        return self.output_shape

    def parameters(self):
        if self.weight is None:
            return []
        return [self.weight, self.bias] if self.use_bias else [self.weight]

    def _check_input(self, x):
        if (isinstance(x, np.ndarray) and self.input_shape is not None and x.ndim == 4
                and x.shape[1:3] == self.input_shape[:2] and x.shape[3] != self.input_shape[2]):
            raise ValueError(f"{self!r} was built for {self.input_shape[2]} input channels, got {x.shape[3]} "
                             f"(input of shape {x.shape}, expected {format_shape(self.input_shape)})")
        check_image_batch(self, x)
        super()._check_input(x)

    # y2d = cols w2d + b (cols: one row per output position, columns in (kh, kw, c) order)
    #   =>  dW = cols^T g,  db = sum over n, i, j of g,  dx = col2im(g w2d^T)
    def forward(self, x, training=False, window_major=False):
        """``window_major=True`` (Sequential passes it when a 2x2 pooling that can read them comes next):
        only the outputs that pooling reads, in the order of its windows, (N, 2, 2, OH//2, OW//2, C_out)
        (see :func:`nnlib._conv.conv2d_forward`); the activation must be None or moved past the pooling."""
        if not self.built or self.weight is None:
            raise RuntimeError(f"{self!r} is not built: call build(input_shape, rng) or use it in a model")
        self._check_input(x)
        self._act = None if self.activation_moved_past_pooling else self.activation
        if window_major and self._act is not None:
            raise ValueError(f"{self!r}: window_major outputs need no activation, or one moved past the pooling")
        y, self._cols = _conv.conv2d_forward(x, self.weight.value, None if self.bias is None else self.bias.value,
                                             self.strides, self.dilation_rate, self.padding, self._buffers,
                                             window_major=window_major)
        self._x_shape = x.shape
        return self._activate(self._act, y, training)

    def forward_pooled(self, x: np.ndarray, pool: str, relu: bool = False) -> np.ndarray:
        """Inference through this layer and the 2x2, stride-2 pooling after it, in one pass (Sequential's
        ``forward(training=False)`` calls it where it pairs the two): ``(N, OH//2, OW//2, C_out)``.

        ``pool`` is ``"max"`` or ``"avg"``; ``relu`` applies the ReLU moved past a max pooling. The
        values of this layer's ``forward(x, window_major=True)`` followed by the pooling, to rounding
        (see :func:`nnlib._conv.conv2d_pool2d_forward`). It keeps nothing for ``backward`` and leaves the
        last ``forward``'s buffers as they were. The activation must be None or moved past the pooling."""
        if not self.built or self.weight is None:
            raise RuntimeError(f"{self!r} is not built: call build(input_shape, rng) or use it in a model")
        self._check_input(x)
        if self.activation is not None and not self.activation_moved_past_pooling:
            raise ValueError(f"{self!r}: forward_pooled needs no activation, or one moved past the pooling")
        return _conv.conv2d_pool2d_forward(x, self.weight.value, None if self.bias is None else self.bias.value,
                                           self.strides, self.dilation_rate, self.padding, pool, relu,
                                           self._pooled_buffers)

    def backward(self, grad_out):
        if self._act is not None:
            grad_out = self._act.backward(grad_out)
        dx, _, _ = _conv.conv2d_backward(
            grad_out, self._cols, self.weight.value, self._x_shape, self.strides, self.dilation_rate, self.padding,
            need_dx=self.needs_input_grad, need_db=self.use_bias, dw_out=self.weight.grad,
            db_out=None if self.bias is None else self.bias.grad, cache=self._buffers)
        return dx if self.needs_input_grad else None

    def symbolic(self, sp, x, weight, bias=None):
        """The same sum written entry by entry (zero padding as literal zeros)."""
        n, h, w, _ = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        oh, ow, _ = self.compute_output_shape(x.shape[1:])
        (top, bottom), (left, right) = _conv.pads_2d((h, w), self.kernel_size, self.strides, self.dilation_rate,
                                                     self.padding)
        xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=sp.Integer(0))
        out = np.empty((n, oh, ow, self.filters), dtype=object)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw, :]
                out[:, i, j, :] = np.tensordot(patch, weight, axes=3)
        if bias is not None:
            out = out + bias
        if self.activation is None or self.activation_moved_past_pooling:
            return out
        return self.activation.symbolic(sp, out)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "dilation_rate": list(self.dilation_rate),
            "use_bias": self.use_bias,
        }

    def __repr__(self) -> str:
        kernel = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        extras = "".join([
            f", strides={self.strides[0] if self.strides[0] == self.strides[1] else self.strides}"
            if self.strides != (1, 1) else "",
            f", padding={self.padding!r}" if self.padding != "valid" else "",
            f", activation={self.activation.registered_name!r}" if self.activation is not None else "",
            f", name={self.name!r}" if self.name else ""])
        return f"Conv2D({self.filters}, {kernel}{extras})"
