"""nnlib/plot.py: plot_gradient_norms draws a real PNG from a GradientMonitor or its history and refuses
figures without grad_norm; plot_history leaves the per-layer figures to it; plot_filters draws the first
convolution layer's kernels."""

from __future__ import annotations

import pytest

import nnlib as nn
from nnlib import GradientMonitor
from nnlib.initializers import Normal
from nnlib.optimizers import Momentum


def test_plot_gradient_norms(tmp_path, digits_600):
    import matplotlib  # noqa: F401  (a dev dependency: the plot must really be drawn)

    from nnlib.plot import plot_gradient_norms

    monitor = GradientMonitor(warn=False)
    model = nn.Sequential([nn.Dense(32, activation="sigmoid", weight_init=Normal(0.05)) for _ in range(3)]
                          + [nn.Dense(10, weight_init=Normal(0.05))], seed=0)  # deep sigmoid: vanishing norms
    model.compile(Momentum(lr=0.05), "softmax_cross_entropy", ["accuracy"])
    model.fit(*digits_600, epochs=2, batch_size=50, verbose=0, tol=None, callbacks=[monitor])
    one = plot_gradient_norms(monitor, tmp_path / "one.png", title="sigmoid")
    both = plot_gradient_norms({"a": monitor, "b": monitor.history}, tmp_path / "both.png")
    for path in (one, both):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    zeros = plot_gradient_norms({"grad_norm/d": [0.0, float("nan")]}, tmp_path / "zeros.png")  # nothing to log-scale
    assert zeros.endswith("zeros.png")
    with pytest.raises(ValueError, match="no grad_norm"):
        plot_gradient_norms({"loss": [1.0]}, tmp_path / "none.png")


def test_plot_history_leaves_per_layer_figures_to_the_gradient_plot(tmp_path, monkeypatch):
    import matplotlib  # noqa: F401  (a dev dependency: the plot must really be drawn)

    from nnlib import plot

    drawn = []
    real = plot._pyplot

    def spy():
        plt = real()
        original = plt.subplots

        def subplots(rows, cols, **kwargs):
            drawn.append(cols)
            return original(rows, cols, **kwargs)

        monkeypatch.setattr(plt, "subplots", subplots)
        return plt

    monkeypatch.setattr(plot, "_pyplot", spy)
    logs = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "grad_norm/dense_0": [0.1, 0.2],
            "update_ratio/dense_0": [1e-3, 2e-3]}
    plot.plot_history(logs, tmp_path / "h.png")
    assert drawn == [2]  # loss and accuracy only


def test_plot_filters_draws_the_first_conv_layer(tmp_path):
    pytest.importorskip("matplotlib")
    model = nn.Sequential([nn.Conv2D(6, 3, input_shape=(8, 8, 1)), nn.Conv2D(2, 3), nn.Flatten(), nn.Dense(2)],
                          seed=0)
    path = tmp_path / "filters.png"
    assert nn.plot.plot_filters(model, path) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    colour = nn.Sequential([nn.Conv2D(20, 2, input_shape=(5, 5, 3))], seed=0)
    assert nn.plot.plot_filters(colour, tmp_path / "c.png", title="rgb", max_filters=10)
    with pytest.raises(ValueError, match="needs a built model with a Conv2D layer"):
        nn.plot.plot_filters(nn.Sequential([nn.Dense(2, input_dim=3)]), tmp_path / "x.png")
