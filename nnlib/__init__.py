"""nnlib: neural networks in plain NumPy that train fast, prove their own derivatives, and feel like Keras.

>>> import nnlib as nn
>>> model = nn.Sequential([nn.Dense(32, activation="relu"), nn.Dense(10)], seed=0)
>>> model.compile(optimizer=nn.Adam(lr=1e-3), loss="softmax_cross_entropy", metrics=["accuracy"])
"""

from . import callbacks, data, functional, initializers, losses, metrics, monitor, optimizers, schedules
from .callbacks import (
    Callback,
    ConvergenceStop,
    CSVLogger,
    EarlyStopping,
    History,
    ModelCheckpoint,
    ProgressLogger,
    TerminateOnNaN,
)
from .gradcheck import GradCheckResult, check_gradients, check_symbolic
from .layers import Dense, Layer, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .losses import MSE, BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from .model import Sequential
from .monitor import GradientHealthWarning, GradientMonitor, explain
from .optimizers import SGD, Adam, AdamW, Momentum, Optimizer, RMSprop
from .parameter import Parameter
from .saving import load_model
from .schedules import CosineDecay, ExponentialDecay, ReduceLROnPlateau, StepDecay
from .training_layers import BatchNormalization, Dropout

__version__ = "0.1.0"

__all__ = [
    "Sequential",
    "Layer",
    "Dense",
    "Dropout",
    "BatchNormalization",
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
    "functional",
    "initializers",
    "losses",
    "metrics",
    "monitor",
    "schedules",
    "optimizers",
]
