"""nnlib: neural networks in plain NumPy that train fast, prove their own derivatives, and feel like Keras.

>>> import nnlib as nn
>>> model = nn.Sequential([nn.Dense(32, activation="relu"), nn.Dense(10)], seed=0)
>>> model.compile(optimizer=nn.Adam(lr=1e-3), loss="softmax_cross_entropy", metrics=["accuracy"])

The layout and the import rule are drawn in the README's "Layout" section.
"""

import importlib

from . import callbacks, data, datasets, functional, initializers, layers, losses, metrics, optimizers
from ._threads import get_num_threads, set_num_threads
from .callbacks import (
    Callback,
    ConvergenceStop,
    CosineDecay,
    CSVLogger,
    EarlyStopping,
    ExponentialDecay,
    GradientHealthWarning,
    GradientMonitor,
    History,
    ModelCheckpoint,
    ProgressLogger,
    ReduceLROnPlateau,
    StepDecay,
    TerminateOnNaN,
)
from .explain import explain
from .gradcheck import GradCheckResult, check_gradients, check_symbolic
from .layers import (
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
from .losses import MSE, BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from .model import Sequential
from .optimizers import SGD, Adam, AdamW, Momentum, Optimizer, RMSprop
from .parameter import Parameter
from .saving import load_model

__version__ = "0.1.0"


def __getattr__(name: str):
    """The deprecated modules of the old layout (``nn.monitor``, ``nn.schedules``, ``nn.training_layers``)
    load on first use, with a DeprecationWarning."""
    if name in ("monitor", "schedules", "training_layers"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Sequential",
    "Layer",
    "Dense",
    "Dropout",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Linear",
    "Loss",
    "SoftmaxCrossEntropy",
    "MSE",
    "BinaryCrossEntropy",
    "Optimizer",
    "SGD",
    "Momentum",
    "Adam",
    "AdamW",
    "RMSprop",
    "StepDecay",
    "ExponentialDecay",
    "CosineDecay",
    "ReduceLROnPlateau",
    "GradientMonitor",
    "GradientHealthWarning",
    "explain",
    "Parameter",
    "load_model",
    "set_num_threads",
    "get_num_threads",
    "Callback",
    "History",
    "ConvergenceStop",
    "ProgressLogger",
    "ModelCheckpoint",
    "EarlyStopping",
    "TerminateOnNaN",
    "CSVLogger",
    "GradCheckResult",
    "check_gradients",
    "check_symbolic",
    "callbacks",
    "data",
    "datasets",
    "functional",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "optimizers",
]
