"""nnlib/callbacks/base.py: the Callback protocol as fit drives it (hook order and params, stopping only
through ``stop_training``, reset between fits, type check), History's keys and values, and the batch logs."""

from __future__ import annotations

import numpy as np
import pytest
from training_helpers import LINE_X, LINE_Y, line_classifier

import nnlib as nn


def test_user_callback_stops_via_stop_training():
    class StopAt(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    model = line_classifier()
    h = model.fit(LINE_X, LINE_Y, epochs=10, batch_size=4, tol=None, verbose=0, callbacks=[StopAt()])
    assert h.epochs_run == 2 and h.stopped_epoch == 1
    assert model.optimizer.iterations == 4
    # It stopped early, so the reason must not claim that every epoch ran.
    assert "completed all" not in h.stop_reason


def test_callback_cannot_stop_otherwise():
    class Chatty(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_reason = "I would like to stop"  # no stop_training: no effect
            return True

        def on_batch_end(self, batch, logs=None):
            return False

    model = line_classifier()
    h = model.fit(LINE_X, LINE_Y, epochs=4, batch_size=4, tol=None, verbose=0, callbacks=[Chatty()])
    assert h.epochs_run == 4 and h.stopped_epoch is None


def test_stop_training_reset_between_fits():
    class StopNow(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = line_classifier()
    model.fit(LINE_X, LINE_Y, epochs=5, verbose=0, tol=None, callbacks=[StopNow()])
    assert model.stop_training
    h = model.fit(LINE_X, LINE_Y, epochs=3, verbose=0, tol=None)
    assert h.epochs_run == 3 and h.stopped_epoch is None


def test_hook_order_and_params():
    events = []

    class Log(nn.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_train_end(self, logs=None):
            events.append("train_end")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_epoch_end(self, epoch, logs=None):
            assert set(logs) == {"loss", "accuracy"}
            events.append(f"epoch_end {epoch}")

        def on_batch_end(self, batch, logs=None):
            assert "loss" in logs and "size" in logs
            events.append(f"batch {batch}")

    x = np.vstack([LINE_X, LINE_X[:2]])  # N = 10, batch 4 -> 3 batches
    y = np.concatenate([LINE_Y, LINE_Y[:2]])
    cb = Log()
    model = line_classifier()
    model.fit(x, y, epochs=3, batch_size=4, tol=None, verbose=0, callbacks=[cb])
    want = ["train_begin"]
    for e in range(3):
        want += [f"epoch_begin {e}", "batch 0", "batch 1", "batch 2", f"epoch_end {e}"]
    want += ["train_end"]
    assert events == want
    assert cb.model is model
    assert cb.params["epochs"] == 3 and cb.params["steps"] == 3 and cb.params["samples"] == 10


def test_callbacks_must_be_callbacks():
    model = line_classifier()
    with pytest.raises(TypeError, match="Callback"):
        model.fit(LINE_X, LINE_Y, epochs=1, verbose=0, callbacks=[lambda *a: None])
    assert model.optimizer.iterations == 0


def test_history_keys_and_values():
    model = line_classifier()
    h = model.fit(LINE_X, LINE_Y, epochs=3, batch_size=4, validation_data=(LINE_X[:4], LINE_Y[:4]), tol=None, verbose=0)
    assert isinstance(h, nn.History)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    assert all(isinstance(v, float) for vals in h.history.values() for v in vals)
    assert all(0.0 <= a <= 1.0 for a in h.history["accuracy"] + h.history["val_accuracy"])
    assert h.epoch == [0, 1, 2] and h.epochs_run == 3
    h2 = line_classifier().fit(LINE_X, LINE_Y, epochs=2, tol=None, verbose=0)
    assert set(h2.history) == {"loss", "accuracy"}


def test_batch_logs_carry_the_batch_metrics():
    """on_batch_end sees each batch's size, loss and metrics (what the progress bar averages)."""
    seen = []

    class Spy(nn.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    rng = np.random.default_rng(0)
    model = nn.Sequential([nn.Dense(3)], seed=0)
    model.compile("sgd", "softmax_cross_entropy", metrics=["accuracy"])
    model.fit(rng.random((10, 2)), rng.integers(0, 3, 10), batch_size=4, callbacks=[Spy()], verbose=0, tol=None)
    assert [log["size"] for log in seen] == [4, 4, 2]
    assert all(set(log) == {"size", "loss", "accuracy"} for log in seen)
    assert all(0.0 <= log["accuracy"] <= 1.0 and log["accuracy"] * log["size"] % 1 == 0 for log in seen)
