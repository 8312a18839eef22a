"""What Dense and Conv2D share: an affine map with learned weights, then an optional activation.

Both take ``activation``, ``weight_init`` and ``bias_init`` with the same meaning, pick He or
Glorot by the activation that follows, run a built-in activation on their own output without a
second shape check, and write those three arguments into their configs the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers
from .activations import LeakyReLU, ReLU, _Activation
from .base import Layer, activations

__all__ = ["AffineLayer"]


def _spec(obj: Any, drop: str | None = None) -> dict[str, Any]:
    config = obj.get_config()
    return {"name": obj.registered_name, "config": {k: v for k, v in config.items() if k != drop}}


class AffineLayer(Layer):
    """Base of layers computing ``activation(affine(x; weight) + bias)``: Dense and Conv2D.

    Parameters
    ----------
    activation : str, Layer or None
        Applied after the affine map; None means linear.
    weight_init : str, Initializer or None
        None chooses by activation: ``he_normal`` when this layer's activation, or the
        layer right after it in a model, is ReLU or LeakyReLU; otherwise
        ``glorot_uniform`` (Keras's default).
    bias_init : str or Initializer
    name, input_shape : optional
        As for every layer.
    """

    def __init__(self, activation: str | Layer | None = None, weight_init: Any = None, bias_init: Any = "zeros",
                 name: str | None = None, input_shape: int | tuple[int, ...] | None = None) -> None:
        super().__init__(name, input_shape)
        self.activation = None if activation is None else activations.get(activation)
        self.weight_init = None if weight_init is None else initializers.get(weight_init)
        self.bias_init = initializers.get(bias_init)
        #: set by Sequential: the activation that follows this layer, for the default init
        self.next_activation: Layer | None = None

    def _weight_initializer(self) -> initializers.Initializer:
        """``weight_init``, or He before ReLU/LeakyReLU and Glorot otherwise."""
        if self.weight_init is not None:
            return self.weight_init
        follower = self.activation or self.next_activation
        if isinstance(follower, (ReLU, LeakyReLU)):
            return initializers.HeNormal()
        return initializers.GlorotUniform()

    def _activate(self, act: Layer | None, y: np.ndarray, training: bool) -> np.ndarray:
        """``act`` applied to ``y``, this layer's own output array (a built-in activation skips its shape check)."""
        if isinstance(act, _Activation):
            return act._forward_checked(y)
        return y if act is None else act.forward(y, training)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "activation": None if self.activation is None else _spec(self.activation, drop="name"),
            "weight_init": None if self.weight_init is None else _spec(self.weight_init),
            "bias_init": _spec(self.bias_init),
        }
