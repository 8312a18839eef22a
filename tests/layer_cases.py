"""The one table of layer cases that every "every layer" test runs over (not collected: no ``test_`` prefix).

``CASES`` maps a case id to a :class:`LayerCase`: how to make the layer, a valid per-sample input width,
the reference formulas where the layer is element-wise or Dense, whether it has a kink at 0, and, for a
layer whose training pass draws randomness (Dropout with rate > 0), the same layer with that randomness
fixed, for finite differences. The tests that use it: tests/test_layers.py (formulas, numeric, symbolic
and inference-mode gradient checks, dtype and immutability, configs, the saving round trip) and
tests/test_properties.py (the hypothesis properties). ``test_layers.py::test_every_registered_layer_has_a_case``
fails when a layer registered in ``nnlib.layers.registry`` has no case here (:func:`missing_cases`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import nnlib as nn
from nnlib.layers import BatchNormalization, Dropout, Layer
from nnlib.registry import Registry

ALPHA = 0.2  # the LeakyReLU slope used throughout


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def leaky_ref(alpha):
    """(f, f') of LeakyReLU(alpha), written from the definition."""
    return (lambda x: np.where(x > 0, x, alpha * x), lambda x: np.where(x > 0, 1.0, alpha))


# activation name -> (f(x), f'(x)) written directly from the definitions
ACT_REF = {
    "relu": (lambda x: np.where(x > 0, x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": leaky_ref(0.01),
    "sigmoid": (sig, lambda x: sig(x) * (1 - sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "linear": (lambda x: x, np.ones_like),
}
LEAKY_REF = leaky_ref(ALPHA)


class FrozenDropout(Dropout):
    """Dropout whose training mask is a fixed pattern, so finite differences see one function."""

    def _draw_mask(self, mask):
        keep = (np.arange(mask.size).reshape(mask.shape) % 3) != 1
        mask[...] = keep / (1.0 - self.rate)


class InferenceMode(Layer):
    """``layer`` run with ``training=False`` in every forward pass, so the gradient checks (which run
    training passes) check the inference-mode backward: Dropout's identity, BatchNormalization's
    running statistics."""

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        self.layer = layer
        if layer.built:
            self.input_shape, self.output_shape, self.dtype = layer.input_shape, layer.output_shape, layer.dtype

    def build(self, input_shape, rng, dtype=np.float32):
        self.output_shape = self.layer.build(input_shape, rng, dtype)
        self.input_shape, self.dtype = self.layer.input_shape, np.dtype(dtype)
        return self.output_shape

    def parameters(self):
        return self.layer.parameters()

    def forward(self, x, training=False):
        return self.layer.forward(x, training=False)

    def backward(self, grad_out):
        return self.layer.backward(grad_out)


@dataclass(frozen=True)
class LayerCase:
    """One layer configuration.

    make : a fresh, unbuilt layer.
    width : a valid per-sample input width (the one tests use when they need a single width).
    any_width : False when the layer accepts only ``width`` (a Dense with a declared input_dim).
    reference : (f, f') of the element-wise part, for Dense (``f(x W + b)``) and the activations; None
        for layers with hand-worked tests of their own (Dropout, BatchNormalization).
    kinked : piecewise linear with a kink at 0 (ReLU, LeakyReLU): finite differences need inputs
        whose pre-activations stay clear of 0.
    fixed : for a layer whose training pass draws randomness, the same layer with it fixed: finite
        differences run many training passes and must see one function.
    image : the one per-sample shape the layer is tested on, for layers of images or other N-D samples
        (Conv2D, pooling, Flatten); None for flat samples of any (or the one) width.
    views : the output may be a view of the input (Flatten, Reshape: NumPy's reshape), never a copy.
    """

    make: Callable[[], Layer]
    width: int = 3
    any_width: bool = True
    reference: tuple | None = None
    kinked: bool = False
    fixed: Callable[[], Layer] | None = None
    image: tuple[int, ...] | None = None
    views: bool = False

    def checkable(self) -> Layer:
        """The layer that finite differences in training mode can check."""
        return (self.fixed or self.make)()

    def input_width(self, wanted: int) -> int:
        """``wanted`` if this layer takes it, else its one valid width."""
        return wanted if self.any_width else self.width

    def sample_shape(self, wanted: int) -> tuple[int, ...]:
        """The per-sample input shape to test with: ``image``, else ``(input_width(wanted),)``."""
        return self.image if self.image is not None else (self.input_width(wanted),)


_KINKED_ACTIVATIONS = ("relu", "leaky_relu")

CASES: dict[str, LayerCase] = {
    "dense": LayerCase(lambda: nn.Dense(4), reference=ACT_REF["linear"]),
    **{f"dense_{a}": LayerCase((lambda a=a: nn.Dense(4, activation=a)), reference=ACT_REF[a],
                               kinked=a in _KINKED_ACTIVATIONS) for a in ACT_REF},
    "dense_leaky_alpha": LayerCase(lambda: nn.Dense(4, activation=nn.LeakyReLU(ALPHA)), reference=LEAKY_REF,
                                   kinked=True),
    "dense_leaky_0.3": LayerCase(lambda: nn.Dense(2, activation=nn.LeakyReLU(0.3)), reference=leaky_ref(0.3),
                                 kinked=True),
    "dense_full": LayerCase(lambda: nn.Dense(3, input_dim=4, activation=nn.LeakyReLU(0.3),
                                             weight_init=nn.initializers.Normal(0.2), bias_init="ones", name="d"),
                            width=4, any_width=False, reference=leaky_ref(0.3), kinked=True),
    "relu": LayerCase(nn.ReLU, reference=ACT_REF["relu"], kinked=True),
    "leaky_relu": LayerCase(lambda: nn.LeakyReLU(ALPHA), reference=LEAKY_REF, kinked=True),
    "leaky_relu_default": LayerCase(nn.LeakyReLU, reference=ACT_REF["leaky_relu"], kinked=True),
    "sigmoid": LayerCase(nn.Sigmoid, reference=ACT_REF["sigmoid"]),
    "tanh": LayerCase(nn.Tanh, reference=ACT_REF["tanh"]),
    "named_tanh": LayerCase(lambda: nn.Tanh(name="t"), reference=ACT_REF["tanh"]),
    "linear": LayerCase(nn.Linear, reference=ACT_REF["linear"]),
    "dropout_0": LayerCase(lambda: Dropout(0.0)),
    "dropout": LayerCase(lambda: Dropout(0.4), fixed=lambda: FrozenDropout(0.4)),
    "dropout_named": LayerCase(lambda: Dropout(0.3, name="d"), fixed=lambda: FrozenDropout(0.3, name="d")),
    "dropout_default": LayerCase(Dropout, fixed=FrozenDropout),
    "batch_normalization": LayerCase(BatchNormalization),
    "batch_normalization_custom": LayerCase(lambda: BatchNormalization(0.9, 1e-5)),
    "batch_normalization_image": LayerCase(lambda: BatchNormalization(0.9, 1e-5), image=(2, 2, 2)),
    "dropout_image": LayerCase(lambda: Dropout(0.4), fixed=lambda: FrozenDropout(0.4), image=(2, 3, 2)),
    "relu_image": LayerCase(nn.ReLU, reference=ACT_REF["relu"], kinked=True, image=(2, 2, 3)),
    "flatten": LayerCase(nn.Flatten, image=(2, 3, 2), views=True),
    "flatten_flat": LayerCase(nn.Flatten, views=True),
    "reshape": LayerCase(lambda: nn.Reshape((3, 2, 2)), image=(2, 6), views=True),
    "reshape_inferred": LayerCase(lambda: nn.Reshape((-1, 2), name="r"), image=(12,), views=True),
    "conv2d": LayerCase(lambda: nn.Conv2D(2, 2), image=(4, 4, 2)),
    "conv2d_same_strided_tanh": LayerCase(lambda: nn.Conv2D(2, 3, strides=2, padding="same", activation="tanh"),
                                          image=(5, 4, 1)),
    "conv2d_dilated_relu_no_bias": LayerCase(lambda: nn.Conv2D(2, 2, dilation_rate=2, activation="relu",
                                                               use_bias=False), image=(5, 5, 1), kinked=True),
    "conv2d_even_kernel_same": LayerCase(lambda: nn.Conv2D(1, (2, 3), padding="same", name="c",
                                                           weight_init=nn.initializers.Normal(0.3)), image=(3, 4, 2)),
    "max_pooling2d": LayerCase(nn.MaxPooling2D, image=(4, 4, 2), kinked=True),
    "max_pooling2d_odd": LayerCase(lambda: nn.MaxPooling2D((2, 3)), image=(5, 7, 1), kinked=True),
    "average_pooling2d": LayerCase(nn.AveragePooling2D, image=(4, 4, 2)),
    "average_pooling2d_same_overlapping": LayerCase(lambda: nn.AveragePooling2D(3, 2, "same", name="a"),
                                                    image=(5, 4, 2)),
    "global_average_pooling2d": LayerCase(nn.GlobalAveragePooling2D, image=(3, 2, 2)),
}
IDS = sorted(CASES)


def missing_cases(registry: Registry, cases: dict[str, LayerCase] = CASES) -> list[str]:
    """Canonical names of the layers in ``registry`` that no case makes (aliases count as their class)."""
    covered = {type(case.make()) for case in cases.values()}
    canonical = sorted({registry.canonical(name) for name in registry.names()})
    return [name for name in canonical if registry.lookup(name) not in covered]


def build(case: LayerCase | str, d_in: int | tuple[int, ...], dtype=np.float64, seed: int = 0, spread: float = 0.5,
          fixed: bool = False) -> Layer:
    """A built layer of ``case`` (its ``fixed`` variant if asked) whose parameters and state are not the
    trivial initial ones: Dense gets a bias in ``±spread``; BatchNormalization a gamma of either sign, a
    beta in ``±spread`` and running statistics away from (0, 1)."""
    case = CASES[case] if isinstance(case, str) else case
    layer = case.checkable() if fixed else case.make()
    rng = np.random.default_rng(seed)
    layer.build(d_in, rng, dtype)
    if getattr(layer, "bias", None) is not None:
        layer.bias.value[...] = rng.uniform(-spread, spread, layer.bias.shape)
    elif isinstance(layer, BatchNormalization):
        d_in = layer.gamma.shape[0]
        layer.gamma.value[...] = rng.uniform(0.5, 1.5, d_in) * rng.choice([-1.0, 1.0], d_in)
        layer.beta.value[...] = rng.uniform(-spread, spread, d_in)
        layer.set_state({"moving_mean": rng.uniform(-spread, spread, d_in),
                         "moving_variance": rng.uniform(0.5, 2.0, d_in)})
    return layer


def pre_activation(layer: Layer, x: np.ndarray) -> np.ndarray:
    """What the kink at 0 sees: the layer's output before its own activation (``x W + b`` for Dense,
    the convolution for Conv2D), ``x`` itself for a layer without one; for max pooling, where ties
    between a window's entries are the kinks, the gaps between them."""
    if getattr(layer, "activation", None) is not None:
        bare = copy.deepcopy(layer)
        bare.activation = None
        return bare.forward(x, training=False).copy()
    if isinstance(layer, nn.Dense):
        return x @ layer.weight.value + layer.bias.value
    if isinstance(layer, nn.MaxPooling2D):  # the cases pool side by side windows ("valid", strides = pool_size)
        (ph, pw), (n, h, w, c) = layer.pool_size, x.shape
        windows = x[:, :h // ph * ph, :w // pw * pw].reshape(n, h // ph, ph, w // pw, pw, c)
        top2 = np.sort(windows.transpose(0, 1, 3, 5, 2, 4).reshape(-1, ph * pw), axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]  # a tie for a window's maximum is max pooling's kink
    return x
