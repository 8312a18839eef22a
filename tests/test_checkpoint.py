"""nnlib/callbacks/checkpoint.py: ModelCheckpoint keeps the best epoch (mode min and max, NaN never best) or
every epoch with log fields in the path, fails before training on an unlogged monitor or path field, and
checks its constructor arguments."""

from __future__ import annotations

import os

import numpy as np
import pytest
from training_helpers import BLOB_X, BLOB_Y, Script, assert_weights_equal, new_model

import nnlib as nn


def test_checkpoint_keeps_only_the_best_epoch(tmp_path):
    script = Script("val_loss", [0.9, 0.5, 0.7, 0.4, 0.6])
    best = nn.ModelCheckpoint(tmp_path / "best.nnlib")  # defaults: val_loss, save_best_only, min
    each_best = nn.ModelCheckpoint(str(tmp_path / "improved" / "e{epoch}.nnlib"))
    model = new_model()
    model.fit(BLOB_X, BLOB_Y, epochs=5, batch_size=8, validation_split=0.25, tol=None, verbose=0,
              callbacks=[script, best, each_best])
    # improvements at epochs 0, 1, 3 (0-based) only; {epoch} is 1-based as in Keras
    assert sorted(os.listdir(tmp_path / "improved")) == ["e1.nnlib", "e2.nnlib", "e4.nnlib"]
    assert best.best == 0.4 and best.best_epoch == 3 and best.last_saved == str(tmp_path / "best.nnlib")
    loaded = nn.load_model(tmp_path / "best.nnlib")
    assert_weights_equal(loaded.get_weights(), script.weights[3])
    assert not np.array_equal(model.get_weights()[0], script.weights[3][0])  # the last epoch was not saved
    assert_weights_equal(nn.load_model(tmp_path / "improved" / "e2.nnlib").get_weights(), script.weights[1])
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_checkpoint_mode_max_and_nan_never_best(tmp_path):
    script = Script("val_accuracy", [0.5, float("nan"), 0.75, 0.6])
    ckpt = nn.ModelCheckpoint(tmp_path / "m.nnlib", monitor="val_accuracy", mode="max")
    model = new_model()
    model.fit(BLOB_X, BLOB_Y, epochs=4, batch_size=8, validation_split=0.25, tol=None, verbose=0,
              callbacks=[script, ckpt])
    assert ckpt.best_epoch == 2 and ckpt.best == 0.75
    assert_weights_equal(nn.load_model(tmp_path / "m.nnlib").get_weights(), script.weights[2])


def test_checkpoint_every_epoch_with_log_fields(tmp_path):
    script = Script("loss", [3.0, 2.0, 1.0])  # no-op overwrite of a real key, to record weights
    ckpt = nn.ModelCheckpoint(tmp_path / "run" / "{epoch:02d}-{loss:.1f}.nnlib", save_best_only=False)
    model = new_model()
    model.fit(BLOB_X, BLOB_Y, epochs=3, batch_size=8, tol=None, verbose=0, callbacks=[script, ckpt])
    assert sorted(os.listdir(tmp_path / "run")) == ["01-3.0.nnlib", "02-2.0.nnlib", "03-1.0.nnlib"]
    for epoch, name in enumerate(sorted(os.listdir(tmp_path / "run"))):
        m = nn.load_model(tmp_path / "run" / name)
        assert_weights_equal(m.get_weights(), script.weights[epoch])
        assert m.optimizer.iterations == 3 * (epoch + 1)


def test_checkpoint_unlogged_monitor_fails_before_training(tmp_path):
    model = new_model()
    model.fit(BLOB_X, BLOB_Y, epochs=1, verbose=0)
    before, steps = model.get_weights(), model.optimizer.iterations
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*available keys: \['accuracy', 'loss'\]"):
        model.fit(BLOB_X, BLOB_Y, epochs=3, verbose=0, callbacks=[nn.ModelCheckpoint(tmp_path / "m.nnlib")])
    with pytest.raises(ValueError, match=r"names \['val_acc'\].*available"):
        model.fit(BLOB_X, BLOB_Y, epochs=3, verbose=0, validation_split=0.25,
                  callbacks=[nn.ModelCheckpoint(tmp_path / "{val_acc}.nnlib")])
    with pytest.raises(ValueError, match=r"cannot format path .*\{loss:d\}"):
        model.fit(BLOB_X, BLOB_Y, epochs=3, verbose=0,
                  callbacks=[nn.ModelCheckpoint(tmp_path / "{loss:d}.nnlib", save_best_only=False)])
    assert_weights_equal(model.get_weights(), before)
    assert model.optimizer.iterations == steps and os.listdir(tmp_path) == []


# -- constructor arguments ----------------------------------------------------------------------
# a wrong type raises TypeError, a wrong value ValueError (nnlib._validation's rule)
BAD_ARGS = [
    (TypeError, lambda: nn.ModelCheckpoint(3), r"path.*3"),
    (ValueError, lambda: nn.ModelCheckpoint(""), r"path.*''"),
    (ValueError, lambda: nn.ModelCheckpoint("ck{}.nnlib"), r"ck\{\}\.nnlib.*\{\}"),
    (ValueError, lambda: nn.ModelCheckpoint("ck{0}.nnlib"), r"\{0\}"),
    (ValueError, lambda: nn.ModelCheckpoint("ck{epoch.nnlib"), r"not a valid format string"),
    (ValueError, lambda: nn.ModelCheckpoint("m.nnlib", mode="auto"), r"mode.*'auto'"),
    (ValueError, lambda: nn.ModelCheckpoint("m.nnlib", monitor=""), r"monitor.*''"),
    (TypeError, lambda: nn.ModelCheckpoint("m.nnlib", save_best_only="yes"), r"save_best_only.*'yes'"),
]


@pytest.mark.parametrize("exc,make,match", BAD_ARGS, ids=[f"bad_arg_{i}" for i in range(len(BAD_ARGS))])
def test_constructor_arguments_are_validated(exc, make, match):
    with pytest.raises(exc, match=match) as info:
        make()
    assert type(info.value) is exc
