"""nnlib/training.py: Ctrl-C during fit (the deferred interrupt): the first SIGINT stops at the next step
boundary with the weights after that step, a second raises KeyboardInterrupt at once, and the previous
handler is restored either way. (The rest of the fit loop is tested through Sequential.fit in test_model.py
and the callback files.)"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from training_helpers import BLOB_X, BLOB_Y, BatchRecorder, assert_weights_equal, new_model

import nnlib as nn
from nnlib.callbacks import Callback


class SigintAt(Callback):
    """Send SIGINT to this process after step ``batch`` of ``epoch`` (``times`` signals)."""

    def __init__(self, epoch, batch, times=1):
        super().__init__()
        self.at, self.times, self.epoch = (epoch, batch), times, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def sigint_guard():
    """A handler of our own while the test runs: a SIGINT that fit fails to catch must not stop pytest."""
    caught = []

    def handler(signum, frame):
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    yield handler, caught
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_at_a_step_boundary(sigint_guard):
    handler, caught = sigint_guard
    rec = BatchRecorder()
    early = nn.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    model = new_model(nn.Adam(lr=0.01))
    history = model.fit(BLOB_X, BLOB_Y, epochs=5, batch_size=8, shuffle=False, tol=None, verbose=0,
                        callbacks=[rec, early, SigintAt(1, 1)])
    assert caught == [] and signal.getsignal(signal.SIGINT) is handler  # fit caught it, then restored ours
    assert history.epoch == [0] and history.stopped_epoch == 1  # the unfinished epoch is not logged
    assert "interrupted" in history.stop_reason and "epoch 2 after batch 2" in history.stop_reason
    assert model.optimizer.iterations == 3 + 2
    assert early.restored_epoch is None  # weights stay those after the batch, as stop_reason says
    assert_weights_equal(model.get_weights(), rec.weights[(1, 1)])
    # the same five steps by hand: epoch 1 unshuffled, then two train_on_batch steps
    ref = new_model(nn.Adam(lr=0.01))
    ref.fit(BLOB_X, BLOB_Y, epochs=1, batch_size=8, shuffle=False, tol=None, verbose=0)
    ref.train_on_batch(BLOB_X[0:8], BLOB_Y[0:8])
    ref.train_on_batch(BLOB_X[8:16], BLOB_Y[8:16])
    assert_weights_equal(model.get_weights(), ref.get_weights())


def test_second_ctrl_c_raises_at_once_and_restores_the_handler(sigint_guard):
    handler, caught = sigint_guard
    model = new_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(BLOB_X, BLOB_Y, epochs=3, batch_size=8, verbose=0, callbacks=[SigintAt(0, 0, times=2)])
    assert caught == [] and signal.getsignal(signal.SIGINT) is handler
    assert model.optimizer.iterations == 1 and all(np.isfinite(w).all() for w in model.get_weights())
