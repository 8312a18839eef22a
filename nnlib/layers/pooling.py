"""Pooling of channels-last images: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D.

The arithmetic lives in :mod:`nnlib._conv`; this module holds the layers' arguments,
shapes and symbolic forms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _conv
from .._validation import check_pair
from .base import Layer, registry
from .conv import check_image_batch, check_image_shape, check_padding, spatial_output_shape

__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"]


class _Pooling2D(Layer):
    """A window of ``pool_size`` sliding by ``strides`` over each channel of ``(N, H, W, C)``."""

    kind = "pool"
    splits_batch = True

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: str = "valid", input_shape: tuple[int, int, int] | None = None,
                 name: str | None = None) -> None:
        super().__init__(name, input_shape)
        owner = type(self).__name__
        self.pool_size = check_pair(pool_size, f"{owner}: pool_size")
        self.strides = self.pool_size if strides is None else check_pair(strides, f"{owner}: strides")
        self.padding = check_padding(padding, owner)
        if self.declared_input_shape is not None:
            self.compute_output_shape(self.declared_input_shape)

    def compute_output_shape(self, input_shape):
        shape = check_image_shape(self, super().compute_output_shape(input_shape))
        oh, ow = spatial_output_shape(self, shape, self.pool_size, self.strides, (1, 1), self.padding, "pool")
        return (oh, ow, shape[2])

    #: set by Sequential when the Conv2D before hands over its outputs as window-major blocks, (N, 2, 2, OH,
    #: OW, C) (see Conv2D.forward): only for 2x2 windows with stride 2 and no padding on that input
    window_major_input = False

    def forward(self, x, training=False):
        self._blocks = self.window_major_input and isinstance(x, np.ndarray) and x.ndim == 6
        if self._blocks:
            expected = (2, 2, *self.output_shape)
            if x.shape[1:] != expected or x.dtype != self.dtype:
                raise ValueError(f"{self!r} takes window-major blocks of shape (N, {', '.join(map(str, expected))}) "
                                 f"and dtype {self.dtype}, got {x.shape} {x.dtype}")
            self._x_shape = x.shape
            return self._forward_blocks(x, training)
        check_image_batch(self, x)
        self._check_input(x)
        if self.input_shape is None:
            self.compute_output_shape(x.shape[1:])  # an unbuilt layer: the window must fit
        self._x_shape = x.shape
        return self._forward(x, training)

    def can_read_blocks(self, input_shape: tuple[int, ...]) -> bool:
        """Whether this pooling may read window-major blocks of images of ``input_shape``: 2x2 windows with
        stride 2 and no padding cell (an odd last row or column is dropped, as "valid" does)."""
        pads = _conv.pads_2d(input_shape[:2], self.pool_size, self.strides, (1, 1), self.padding)
        return self.pool_size == self.strides == (2, 2) and pads == ((0, 0), (0, 0)) \
            and input_shape[0] >= 2 and input_shape[1] >= 2

    def _windows(self, x: np.ndarray) -> Any:
        """Yield ``(i, j, window)`` over the output positions of an object array ``x``; padding cells
        are left out (they never win a max and are not counted in an average)."""
        n, h, w, _ = x.shape
        oh, ow, _ = self.compute_output_shape(x.shape[1:])
        (top, _), (left, _) = _conv.pads_2d((h, w), self.pool_size, self.strides, (1, 1), self.padding)
        for i in range(oh):
            for j in range(ow):
                r0, c0 = i * self.strides[0] - top, j * self.strides[1] - left
                yield i, j, x[:, max(r0, 0):r0 + self.pool_size[0], max(c0, 0):c0 + self.pool_size[1], :]

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}

    def __repr__(self) -> str:
        pool = self.pool_size[0] if self.pool_size[0] == self.pool_size[1] else self.pool_size
        extras = "".join([f", strides={self.strides}" if self.strides != self.pool_size else "",
                          f", padding={self.padding!r}" if self.padding != "valid" else "",
                          f", name={self.name!r}" if self.name else ""])
        return f"{type(self).__name__}({pool}{extras})"


@registry.register("max_pooling2d", "max_pool2d")
class MaxPooling2D(_Pooling2D):
    """The largest value of each window, per channel (Keras's ``MaxPooling2D``).

    Parameters
    ----------
    pool_size : int or (int, int), default 2
    strides : int or (int, int), optional
        Defaults to ``pool_size`` (windows side by side).
    padding : {"valid", "same"}, default "valid"
        "same" pads to ``ceil(in / stride)`` outputs; padding cells never win.

    Notes
    -----
    The gradient of each window goes to its first maximum in row-major order, PyTorch's
    rule: ties are common (flat image backgrounds, zeros after ReLU), and sending the
    whole gradient to one entry keeps ``backward`` the derivative of one branch of the
    max. Overlapping windows (``strides < pool_size``) add up their gradients.
    """

    derivative_text = "passes each window's gradient to the first entry that held the window's maximum"
    pool_kind = "max"  # for Conv2D.forward_pooled

    #: set by Sequential when a ReLU comes right before (a layer, or a Conv2D's activation): this layer
    #: applies it after pooling, to 4x fewer elements after a 2x2 pool. ReLU and max are both monotone, so
    #: relu(max(w)) = max(relu(w)), and the gradient is the same too: it goes to the window's first maximum
    #: when that maximum is > 0, and nowhere when it is <= 0 (ReLU's derivative is 0 there either way).
    relu_after = False

    # y[n, i, j, c] = max over the window of x  =>  dx = g at the window's first argmax, 0 elsewhere
    #   (relu_after: y = m [m > 0] for that max m  =>  the same, with g first multiplied by [m > 0])
    def _forward(self, x, training):
        # Inference needs no record of the winners; a backward pass after one finds them then. The ReLU
        # (ReLU's own form, y * (y > 0)) is applied inside the kernel, and its gradient is in the winners.
        self._x, self._relu_applied = x, self.relu_after
        y, self._winners = _conv.max_pool2d_forward(x, self.pool_size, self.strides, self.padding, self._buffers,
                                                    need_mask=training, relu=self._relu_applied)
        return y

    def _forward_blocks(self, x, training):
        self._x, self._relu_applied = x, self.relu_after
        y, self._winners = _conv.max_pool2d_blocks_forward(x, self._buffers, need_mask=training,
                                                           relu=self._relu_applied)
        return y

    def backward(self, grad_out):
        if self._blocks:
            if self._winners is None:
                self._winners = _conv.max_pool2d_blocks_forward(self._x, {}, relu=self._relu_applied)[1]
            return _conv.max_pool2d_blocks_backward(grad_out, self._winners, self._buffers)
        if self._winners is None:
            scratch: dict = {}  # not the layer's buffers: the forward output must stay valid
            self._winners = _conv.max_pool2d_forward(self._x, self.pool_size, self.strides, self.padding,
                                                     scratch, relu=self._relu_applied)[1]
        return _conv.max_pool2d_backward(grad_out, self._winners, self._x_shape, self.pool_size, self.strides,
                                         self.padding, self._buffers)

    def symbolic(self, sp, x):
        out = np.empty((x.shape[0], *self.compute_output_shape(x.shape[1:])), dtype=object)
        for i, j, window in self._windows(x):
            for n in range(x.shape[0]):
                for c in range(x.shape[3]):
                    out[n, i, j, c] = sp.Max(*window[n, :, :, c].ravel(), *([0] if self.relu_after else []))
        return out


@registry.register("average_pooling2d", "avg_pool2d")
class AveragePooling2D(_Pooling2D):
    """The mean of each window, per channel (Keras's ``AveragePooling2D``).

    Parameters
    ----------
    pool_size : int or (int, int), default 2
    strides : int or (int, int), optional
        Defaults to ``pool_size``.
    padding : {"valid", "same"}, default "valid"
        With "same", a window that overlaps the padding is divided by the count of its
        real, unpadded entries (Keras/TensorFlow; PyTorch's ``count_include_pad=False``).
    """

    derivative_text = "spreads each window's gradient evenly over the window's real entries"
    pool_kind = "avg"  # for Conv2D.forward_pooled

    # y = sum over the window's real entries of x / count  =>  dx = g / count on each of them
    def _forward(self, x, training):
        return _conv.avg_pool2d_forward(x, self.pool_size, self.strides, self.padding, self._buffers)

    def _forward_blocks(self, x, training):
        return _conv.avg_pool2d_blocks_forward(x, self._buffers)

    def backward(self, grad_out):
        if self._blocks:
            return _conv.avg_pool2d_blocks_backward(grad_out, self._buffers)
        return _conv.avg_pool2d_backward(grad_out, self._x_shape, self.pool_size, self.strides, self.padding,
                                         self._buffers)

    def symbolic(self, sp, x):
        out = np.empty((x.shape[0], *self.compute_output_shape(x.shape[1:])), dtype=object)
        for i, j, window in self._windows(x):
            out[:, i, j, :] = window.sum(axis=(1, 2)) / (window.shape[1] * window.shape[2])
        return out


@registry.register("global_average_pooling2d", "global_avg_pool2d")
class GlobalAveragePooling2D(Layer):
    """The mean of each channel over the image: ``(N, H, W, C)`` to ``(N, C)`` (Keras's layer)."""

    derivative_text = "spreads each channel's gradient evenly over the H W positions"
    splits_batch = True

    def compute_output_shape(self, input_shape):
        return (check_image_shape(self, super().compute_output_shape(input_shape))[2],)

    # y[n, c] = mean over (h, w) of x[n, h, w, c]  =>  dx[n, h, w, c] = g[n, c] / (H W)
    def forward(self, x, training=False):
        check_image_batch(self, x)
        self._check_input(x)
        self._x_shape = x.shape
        return _conv.global_avg_pool2d_forward(x, self._buffers)

    def backward(self, grad_out):
        return _conv.global_avg_pool2d_backward(grad_out, self._x_shape, self._buffers)

    def symbolic(self, sp, x):
        return x.sum(axis=(1, 2)) / (x.shape[1] * x.shape[2])
