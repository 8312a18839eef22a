"""nnlib/training.py: the fit loop's seams: Ctrl-C during fit (the deferred interrupt: the first SIGINT
stops at the next step boundary with the weights after that step, a second raises KeyboardInterrupt at
once, and the previous handler is restored either way), the order of callbacks (History last, recording
what the others add to an epoch's logs), the on_nonfinite_step hook, the batch iterator and
evaluate_arrays. (The rest of the fit loop is tested through Sequential.fit in test_model.py and the
callback files.)"""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
from training_helpers import BLOB_X, BLOB_Y, BatchRecorder, NanAtCall, assert_weights_equal, new_model

import nnlib as nn
from nnlib.callbacks import Callback
from nnlib.data import BatchIterator
from nnlib.training import evaluate_arrays


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


# -- callbacks around the loop, the non-finite hook, batches ------------------------------------
RNG = np.random.default_rng(0)
X = RNG.standard_normal((24, 3)).astype(np.float32)
Y = (X[:, 0] > 0).astype(int)


def classifier(seed=0):
    model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(2)], seed=seed)
    model.compile(nn.SGD(lr=0.1), "softmax_cross_entropy", metrics=["accuracy"])
    return model


class Adds(nn.Callback):
    """Puts its own figure into each epoch's logs and records the order it ran in."""

    def __init__(self, order):
        super().__init__()
        self.order = order

    def on_epoch_end(self, epoch, logs=None):
        self.order.append("adds")
        logs["custom"] = 10.0 + epoch


class Reads(nn.Callback):
    def __init__(self, order):
        super().__init__()
        self.order, self.history_lengths = order, []

    def on_epoch_end(self, epoch, logs=None):
        self.order.append("reads")
        self.history_lengths.append(len(self.model.history.epoch))  # History has not run yet


def test_history_runs_after_every_other_callback_and_records_their_figures():
    order = []
    reads = Reads(order)
    model = classifier()
    history = model.fit(X, Y, epochs=3, batch_size=8, verbose=0, tol=None, callbacks=[Adds(order), reads])
    assert history.history["custom"] == [10.0, 11.0, 12.0]
    assert reads.history_lengths == [0, 1, 2]  # History records epoch k only after the others saw it
    assert order == ["adds", "reads"] * 3
    assert set(history.history) == {"loss", "accuracy", "custom"}


def test_history_from_a_schedule_and_the_gradient_monitor():
    model = classifier()
    monitor = nn.GradientMonitor(every=2, warn=False)
    history = model.fit(X, Y, epochs=4, batch_size=8, verbose=0, tol=None,
                        callbacks=[nn.StepDecay(step_size=2, gamma=0.5), monitor])
    assert history.history["lr"] == [0.1, 0.1, 0.05, 0.05]
    norms = history.history["grad_norm/dense_0"]
    assert len(norms) == 4 and math.isnan(norms[1]) and math.isnan(norms[3])  # every=2: epochs 0 and 2 only
    assert [norms[0], norms[2]] == monitor.history["grad_norm/dense_0"]
    assert model.history is history


class Handles(nn.Callback):
    def __init__(self, handled, seen):
        super().__init__()
        self.handled, self.seen = handled, seen

    def on_nonfinite_step(self, epoch, batch, error):
        self.seen.append((type(self).__name__, self.handled, epoch, batch, str(error)))
        if self.handled:
            self.model.stop_training = True
            self.model.stop_reason = f"handled at epoch {epoch + 1}, batch {batch + 1}"
        return self.handled


T = X[:, :2] * 0.5  # regression targets for the scripted MSE


def nan_model():
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=1)
    model.compile(nn.SGD(lr=0.1), NanAtCall(5))  # 3 batches an epoch: call 5 is epoch 2, batch 2
    return model


def test_a_nonfinite_step_is_offered_to_the_callbacks_in_order_until_one_handles_it():
    seen = []
    model = nan_model()
    history = model.fit(X, T, epochs=4, batch_size=8, verbose=0, tol=None,
                        callbacks=[Handles(False, seen), Handles(True, seen), Handles(True, seen)])
    assert [(h, e, b) for _, h, e, b, _ in seen] == [(False, 1, 1), (True, 1, 1)]  # the third is not asked
    assert "the loss became nan" in seen[0][4]
    assert history.epoch == [0] and history.stopped_epoch == 1
    assert history.stop_reason == model.stop_reason == "handled at epoch 2, batch 2"
    assert model.optimizer.iterations == 4  # the failed step updated nothing
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_an_unhandled_nonfinite_step_raises_with_its_place_and_changes_nothing_after():
    seen = []
    model = nan_model()
    with pytest.raises(FloatingPointError, match=r"^epoch 2, batch 2: the loss became nan"):
        model.fit(X, T, epochs=4, batch_size=8, verbose=0, tol=None, callbacks=[Handles(False, seen)])
    assert len(seen) == 1 and model.optimizer.iterations == 4


class OnlySaysYes(nn.Callback):
    def on_nonfinite_step(self, epoch, batch, error):
        return True


def test_a_handler_that_only_returns_true_still_stops_fit_with_a_reason():
    model = nan_model()
    history = model.fit(X, T, epochs=4, batch_size=8, verbose=0, tol=None, callbacks=[OnlySaysYes()])
    assert model.stop_training and history.epoch == [0] and history.stopped_epoch == 1
    assert history.stop_reason == model.stop_reason == (
        "non-finite loss or gradient in epoch 2, batch 2; stopped by OnlySaysYes")


def test_the_default_hook_declines():
    assert nn.Callback().on_nonfinite_step(0, 0, FloatingPointError("x")) is False


def test_batch_iterator_gathers_the_rows_of_the_order_and_keeps_the_last_batch():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.arange(10) * 10
    batches = BatchIterator(x, y, 4)
    order = np.array([9, 2, 5, 0, 1, 7, 3, 8, 6, 4])
    got = [(xb.copy(), yb) for xb, yb in batches(order)]
    assert [len(yb) for _, yb in got] == [4, 4, 2]
    for (xb, yb), idx in zip(got, (order[:4], order[4:8], order[8:])):
        np.testing.assert_array_equal(xb, x[idx])
        np.testing.assert_array_equal(yb, y[idx])
    first = next(iter(batches(order)))[0]
    assert next(iter(batches(order[::-1])))[0] is first  # one buffer, reused: valid until the next batch
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        BatchIterator(x, y, 0)


def test_evaluate_arrays_over_chosen_rows_equals_evaluate_on_them():
    model = classifier()
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0, tol=None)
    idx = np.array([3, 7, 11, 20, 21])
    got = evaluate_arrays(model, X, Y, idx, batch_size=2)
    want = model.evaluate(X[idx], Y[idx])
    assert got.keys() == want.keys()
    for key in got:
        assert got[key] == pytest.approx(want[key], rel=1e-6)


@pytest.mark.parametrize("tol", [1e-4, None], ids=["stop_rule", "no_stop_rule"])
def test_fit_checks_monitor_by_one_rule_with_or_without_the_stop_rule(tol):
    model = classifier()
    with pytest.raises(TypeError, match="monitor must be a non-empty str, got 3"):
        model.fit(X, Y, epochs=1, verbose=0, tol=tol, monitor=3)
    with pytest.raises(ValueError, match="monitor must be one of 'loss', 'accuracy', got 'val_loss'"):
        model.fit(X, Y, epochs=1, verbose=0, tol=tol, monitor="val_loss")
    assert not model.built  # nothing changed

