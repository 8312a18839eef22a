"""Training curves to PNG with matplotlib (the optional ``plot`` extra).

matplotlib is imported only when a plot is drawn, with the non-interactive Agg
backend, so nnlib never needs a display or matplotlib to train.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_history", "MISSING_MATPLOTLIB"]

MISSING_MATPLOTLIB = "plotting needs matplotlib: pip install 'nnlib[plot]' (or pip install matplotlib)"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Any, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Draw loss and metric curves (train and validation) per epoch into a PNG.

    Parameters
    ----------
    history : History or dict[str, list[float]]
        What ``fit`` returned, or its ``.history`` dict.
    path : str or PathLike
        Output file.
    title : str, optional

    Returns
    -------
    str
        The path written.
    """
    plt = _pyplot()
    logs = getattr(history, "history", history)
    epochs = getattr(history, "epoch", None) or list(range(len(logs.get("loss", []))))
    names = [k for k in logs if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        xs = [e + 1 for e in epochs]
        ax.plot(xs, logs[name], marker="o", ms=3, label=f"train {name}")
        if "val_" + name in logs:
            ax.plot(xs, logs["val_" + name], marker="o", ms=3, label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
