"""Shared builders for the tests of the callbacks and the fit loop (not collected: no ``test_`` prefix).

Two small data sets, ``LINE_X``/``LINE_Y`` (8 rows) and ``BLOB_X``/``BLOB_Y`` (24 rows, three blobs); the
models trained on them; losses that return scripted values or turn NaN at a chosen call; and two
recording callbacks. Monitored values are scripted: a ``Script`` callback placed before the one under
test overwrites ``logs[key]`` with a hand-written sequence (History, first in the list, keeps the real
values) and records the weights at the end of every epoch, so each test knows which epoch is best and
what its weights were.
"""

from __future__ import annotations

import numpy as np

import nnlib as nn
from nnlib.callbacks import Callback

LINE_X = np.linspace(-1, 1, 16).reshape(8, 2)
LINE_Y = np.array([0, 1] * 4)


class ScriptedLoss(nn.Loss):
    """Returns scripted values; one script per batch size (train vs validation); zero gradient."""

    def __init__(self, scripts):
        super().__init__()
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls = {k: 0 for k in scripts}

    def forward(self, y_pred, y_true):
        n = y_pred.shape[0]
        value = self.scripts[n][self.calls[n]]
        self.calls[n] += 1
        self._shape = y_pred.shape
        return float(value)

    def backward(self):
        return np.zeros(self._shape, dtype=np.float32)


def scripted_model(scripts):
    model = nn.Sequential([nn.Dense(1, input_dim=2)], seed=0)
    model.compile(nn.SGD(lr=0.1), ScriptedLoss(scripts))
    return model


def line_classifier():
    """A 2-3-2 tanh classifier for ``LINE_X``/``LINE_Y``, compiled with SGD and accuracy."""
    model = nn.Sequential([nn.Dense(3, input_dim=2, activation="tanh"), nn.Dense(2)], seed=0)
    model.compile(nn.SGD(lr=0.1), "softmax_cross_entropy", ["accuracy"])
    return model


def blobs(n_per_class=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
    x = np.concatenate([c + 0.5 * rng.standard_normal((n_per_class, 2)) for c in centers])
    y = np.repeat(np.arange(3), n_per_class)
    return x, y


BLOB_X, BLOB_Y = blobs()  # N = 24


def new_model(optimizer=None, loss="softmax_cross_entropy", seed=0):
    model = nn.Sequential([nn.Dense(5, activation="tanh"), nn.Dense(3)], seed=seed)
    model.compile(optimizer or nn.Adam(lr=0.02), loss, ["accuracy"])
    return model


def assert_weights_equal(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


class Script(Callback):
    """Overwrite ``logs[key]`` with ``values[epoch]`` and record the weights after every epoch."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, list(values), {}

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights[epoch] = self.model.get_weights()


class BatchRecorder(Callback):
    """Record the weights after every step as {(epoch, batch): weights}."""

    def __init__(self):
        super().__init__()
        self.weights, self.epoch = {}, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        self.weights[(self.epoch, batch)] = self.model.get_weights()


class NanAtCall(nn.MSE):
    """MSE whose forward returns NaN on call number ``bad_call`` (1-based); no validation runs."""

    def __init__(self, bad_call):
        super().__init__()
        self.bad_call, self.calls = bad_call, 0

    def forward(self, y_pred, y_true):
        self.calls += 1
        loss = super().forward(y_pred, y_true)
        return float("nan") if self.calls == self.bad_call else loss


class NanGradAtCall(nn.MSE):
    """MSE whose backward returns NaN everywhere on call number ``bad_call`` (quiet NaNs raise no FP flags)."""

    def __init__(self, bad_call):
        super().__init__()
        self.bad_call, self.calls = bad_call, 0

    def backward(self):
        self.calls += 1
        grad = super().backward()
        return np.full_like(grad, np.nan) if self.calls == self.bad_call else grad


XR = np.abs(BLOB_X) + 0.1
TR = XR @ np.array([[0.5], [-1.0]])


def regressor(loss, optimizer=None):
    model = nn.Sequential([nn.Dense(1, input_dim=2)], seed=3)
    model.compile(optimizer or nn.SGD(lr=0.01), loss)
    return model
