"""nnlib/callbacks/logging.py: ProgressLogger (fit's verbose=0, 1, 2 output: one line an epoch, the stop
reason, no progress bar off a terminal) and CSVLogger (header, exact floats, append, refusing other
columns, every epoch written before a stop); the constructors' argument checks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from training_helpers import (
    BLOB_X,
    BLOB_Y,
    LINE_X,
    LINE_Y,
    TR,
    XR,
    NanAtCall,
    line_classifier,
    new_model,
    regressor,
    scripted_model,
)

import nnlib as nn


# -- ProgressLogger (fit's verbose) ---------------------------------------------------------------
def test_verbose_0_prints_nothing(capsys):
    line_classifier().fit(LINE_X, LINE_Y, epochs=3, batch_size=4, verbose=0)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_lines_per_epoch(capsys, verbose):
    h = line_classifier().fit(LINE_X, LINE_Y, epochs=3, batch_size=4, tol=None, verbose=verbose)
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    epoch_lines = [ln for ln in lines if ln.startswith("Epoch ")]
    assert len(epoch_lines) == 3
    for k, ln in enumerate(epoch_lines, start=1):
        assert f"{k}/3" in ln and "loss" in ln and "accuracy" in ln
    assert "\r" not in out  # no progress bar when output is not a terminal
    if verbose == 1:
        assert any(h.stop_reason in ln for ln in lines)
        assert len(lines) == 4


def test_verbose_1_prints_convergence_reason(capsys):
    model = scripted_model({8: [1.0, 0.99, 0.98, 0.97]})
    h = model.fit(LINE_X, np.zeros(8), epochs=4, batch_size=8, tol=0.1, patience=2, verbose=1)
    out = capsys.readouterr().out
    assert h.stopped_epoch == 2
    assert len([ln for ln in out.splitlines() if ln.startswith("Epoch ")]) == 3
    assert h.stop_reason in out and "converged" in out


# -- CSVLogger --------------------------------------------------------------------------------------
def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_rows_header_and_append(tmp_path):
    path = tmp_path / "log.csv"
    model = new_model()
    h1 = model.fit(BLOB_X, BLOB_Y, epochs=2, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                   callbacks=[nn.CSVLogger(path)])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    for i, row in enumerate(rows[1:]):
        assert [float(v) for v in row[1:]] == [h1.history[k][i] for k in rows[0][1:]]  # exact floats
    h2 = model.fit(BLOB_X, BLOB_Y, epochs=4, initial_epoch=2, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                   callbacks=[nn.CSVLogger(path, append=True)])
    rows = read_csv(path)
    assert len(rows) == 5 and rows.count(rows[0]) == 1 and [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert float(rows[4][1]) == h2.history["loss"][1]
    h3 = model.fit(BLOB_X, BLOB_Y, epochs=1, batch_size=8, tol=None, verbose=0,
                   callbacks=[nn.CSVLogger(path)])  # overwrite
    assert read_csv(path) == [["epoch", "loss", "accuracy"],
                              ["0", repr(h3.history["loss"][0]), repr(h3.history["accuracy"][0])]]


def test_csv_logger_append_refuses_other_columns(tmp_path):
    path = tmp_path / "log.csv"
    model = new_model()
    model.fit(BLOB_X, BLOB_Y, epochs=1, verbose=0, callbacks=[nn.CSVLogger(path)])
    before = path.read_text()
    with pytest.raises(ValueError, match=r"columns \['epoch', 'loss', 'accuracy'\].*val_loss"):
        model.fit(BLOB_X, BLOB_Y, epochs=1, validation_split=0.25, verbose=0,
                  callbacks=[nn.CSVLogger(path, append=True)])
    assert path.read_text() == before


def test_csv_logger_writes_each_epoch_before_a_stop(tmp_path):
    path = tmp_path / "log.csv"
    model = regressor(NanAtCall(10))
    model.fit(XR, TR, epochs=5, batch_size=6, tol=None, verbose=0,
              callbacks=[nn.CSVLogger(path), nn.TerminateOnNaN()])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss"] and [r[0] for r in rows[1:]] == ["0", "1"]


# -- constructor arguments ----------------------------------------------------------------------
# a wrong type raises TypeError, a wrong value ValueError (nnlib._validation's rule)
BAD_ARGS = [
    (TypeError, lambda: nn.CSVLogger(None), r"path.*None"),
    (TypeError, lambda: nn.CSVLogger("log.csv", append=1), r"append.*1"),
]


@pytest.mark.parametrize("exc,make,match", BAD_ARGS, ids=[f"bad_arg_{i}" for i in range(len(BAD_ARGS))])
def test_constructor_arguments_are_validated(exc, make, match):
    with pytest.raises(exc, match=match) as info:
        make()
    assert type(info.value) is exc
