"""Layers, each with forward and backward side by side and a sympy form for its gradient check.

- :mod:`~nnlib.layers.base`: the :class:`Layer` contract and the registries;
- :mod:`~nnlib.layers.activations`: ReLU, LeakyReLU, Sigmoid, Tanh, Linear;
- :mod:`~nnlib.layers.affine`: AffineLayer, the base Dense and Conv2D share;
- :mod:`~nnlib.layers.dense`: Dense;
- :mod:`~nnlib.layers.dropout`: Dropout;
- :mod:`~nnlib.layers.normalization`: BatchNormalization;
- :mod:`~nnlib.layers.reshape`: Flatten, Reshape;
- :mod:`~nnlib.layers.conv`: Conv2D;
- :mod:`~nnlib.layers.pooling`: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D.
"""

from .activations import LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .base import Layer, activations, get, registry
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .reshape import Flatten, Reshape

__all__ = ["Layer", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Linear", "Dropout", "BatchNormalization",
           "Flatten", "Reshape", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
           "registry", "activations", "get"]
