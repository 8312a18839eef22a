"""Layers, each with forward and backward side by side and a sympy form for its gradient check.

- :mod:`~nnlib.layers.base`: the :class:`Layer` contract and the registries;
- :mod:`~nnlib.layers.activations`: ReLU, LeakyReLU, Sigmoid, Tanh, Linear;
- :mod:`~nnlib.layers.dense`: Dense;
- :mod:`~nnlib.layers.dropout`: Dropout;
- :mod:`~nnlib.layers.normalization`: BatchNormalization;
- :mod:`~nnlib.layers.reshape`: Flatten, Reshape.
"""

from .activations import LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .base import Layer, activations, get, registry
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNormalization
from .reshape import Flatten, Reshape

__all__ = ["Layer", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Linear", "Dropout", "BatchNormalization",
           "Flatten", "Reshape", "registry", "activations", "get"]
