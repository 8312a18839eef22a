"""nnlib/cli.py, the nnlib command: train / evaluate / predict on digits and on IDX directories, and its errors."""

from __future__ import annotations

import csv
import struct
import sys

import numpy as np
import pytest

from nnlib import cli, load_model


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; return (exit status, stdout, stderr)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:  # argparse exits on bad arguments
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_train_on_digits_prints_accuracy_and_stop_reason_and_saves(tmp_path, capsys):
    path = tmp_path / "digits.nnlib"
    status, out, _ = run(capsys, "train", "--data", "digits", "--epochs", "8", "--hidden", "32",
                         "--lr", "3e-3", "--quiet", "--save", str(path))
    assert status == 0
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert 0.9 < accuracy <= 1.0
    assert "completed all 8 epochs" in out
    model = load_model(path)
    assert [layer.output_dim for layer in model.layers if layer.parameters()] == [32, 10]


def test_train_shows_one_progress_line_per_epoch_when_not_a_terminal(capsys):
    status, out, _ = run(capsys, "train", "--data", "digits", "--epochs", "2", "--hidden", "8")
    assert status == 0
    assert out.count("Epoch ") == 2 and "samples/s" in out and "Stopped: " in out


def test_evaluate_and_predict_a_saved_model(tmp_path, capsys):
    path = tmp_path / "m.nnlib"
    status, out, _ = run(capsys, "train", "--epochs", "2", "--hidden", "16", "--quiet", "--save", str(path))
    trained = float(out.split("test accuracy: ")[1].split()[0])
    assert status == 0
    status, out, _ = run(capsys, "evaluate", str(path), "--data", "digits")
    assert status == 0
    assert float(out.split("test accuracy: ")[1].split()[0]) == trained  # the saved model, unchanged

    csv_path = tmp_path / "p.csv"
    status, out, _ = run(capsys, "predict", str(path), "--data", "digits", "--out", str(csv_path))
    assert status == 0
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["index", "predicted", "p0"] and len(rows[0]) == 12
    assert len(rows) == 1 + 450  # the digits test split
    probs = np.array([[float(v) for v in row[2:]] for row in rows[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert [int(row[1]) for row in rows[1:]] == probs.argmax(axis=1).tolist()


def test_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "curves.png"
    status, out, _ = run(capsys, "train", "--epochs", "2", "--hidden", "8", "--quiet", "--plot", str(png))
    assert status == 0 and "wrote the curves" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_prints_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "curves.png"
    status, out, _ = run(capsys, "train", "--epochs", "1", "--hidden", "8", "--quiet", "--plot", str(png))
    assert status == 0
    assert "pip install" in out and "matplotlib" in out
    assert not png.exists()


def _write_idx(path, array: np.ndarray) -> None:
    codes = {np.uint8: 0x08}
    with open(path, "wb") as f:
        f.write(bytes([0, 0, codes[array.dtype.type], array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def test_train_on_a_directory_of_idx_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    status, out, _ = run(capsys, "train", "--data", str(tmp_path), "--epochs", "1", "--hidden", "8", "--quiet")
    assert status == 0
    assert "40 train and 20 test samples, 784 features, 10 classes" in out


def test_train_the_reference_cnn_on_idx_images_then_evaluate_it(tmp_path, capsys):
    """--arch cnn: the reference CNN on (28, 28, 1) images made from the rows by its first layer, so the saved
    model evaluates on the same rows."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    path = tmp_path / "cnn.nnlib"
    status, out, _ = run(capsys, "train", "--data", str(tmp_path), "--arch", "cnn", "--epochs", "1", "--quiet",
                         "--save", str(path))
    assert status == 0 and "test accuracy: " in out
    model = load_model(path)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Reshape", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert [layer.output_shape for layer in model.layers][:5] == [(28, 28, 1), (28, 28, 32), (14, 14, 32),
                                                                 (14, 14, 64), (7, 7, 64)]
    status, out, _ = run(capsys, "evaluate", str(path), "--data", str(tmp_path))
    assert status == 0 and "test accuracy: " in out


def test_cnn_on_digits_trains(capsys):
    status, out, _ = run(capsys, "train", "--data", "digits", "--arch", "cnn", "--epochs", "2", "--quiet")
    assert status == 0 and 0.5 < float(out.split("test accuracy: ")[1].split()[0]) <= 1.0


def test_cnn_needs_square_images():
    args = cli.build_parser().parse_args(["train", "--arch", "cnn"])
    with pytest.raises(ValueError, match=r"--arch cnn needs square images of at least 4x4 pixels; digits has "
                                         r"63 features per sample"):
        cli._layers(args, 63, 10)


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["train", "--arch", "resnet"], 2, "invalid choice: 'resnet'"),
    (["train", "--data", "nope"], 1, "unknown dataset 'nope'"),
    (["train", "--data", "/no/such/dir"], 1, "data directory /no/such/dir does not exist"),
    (["train", "--hidden", "0"], 2, "--hidden sizes must be > 0"),
    (["train", "--hidden", "a,b"], 2, "comma-separated positive ints"),
    (["train", "--lr", "-1"], 2, "expected a positive float"),
    (["train", "--epochs", "0"], 2, "expected a positive int"),
    (["train", "--validation-split", "1.5"], 2, "fraction in (0, 1)"),
    (["train", "--tol", "-3"], 2, "number >= 0 or 'none'"),
    (["train", "--optimizer", "nadam"], 2, "invalid choice"),
    (["evaluate", "/no/such/model.nnlib"], 1, "no such model file"),
])
def test_bad_arguments_print_one_line_and_exit_non_zero(argv, status, message, capsys):
    got, out, err = run(capsys, *argv)
    assert got == status
    assert message in err
    assert err.startswith("nnlib: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_evaluate_refuses_a_file_that_is_not_a_model(tmp_path, capsys):
    bogus = tmp_path / "x.nnlib"
    bogus.write_bytes(b"not a zip at all")
    status, _, err = run(capsys, "evaluate", str(bogus))
    assert status == 1 and "not an nnlib model file" in err
