"""Training curves, gradient norms and convolution filters to PNG with matplotlib (the optional ``plot`` extra).

matplotlib is imported only when a plot is drawn, with the non-interactive Agg
backend, so nnlib never needs a display or matplotlib to train.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_history", "plot_gradient_norms", "plot_filters", "MISSING_MATPLOTLIB"]

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
    # per-layer figures (grad_norm/<layer>, update_ratio/<layer>) belong to plot_gradient_norms
    names = [k for k in logs if not k.startswith("val_") and "/" not in k]
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


def _gradient_logs(source: Any) -> tuple[dict[str, list[float]], list[int] | None]:
    logs = getattr(source, "history", source)
    epochs = getattr(source, "epochs", None) or getattr(source, "epoch", None)
    return logs, epochs


def _is_collection(source: Any) -> bool:
    """A ``{label: monitor or history}`` dict rather than one ``{key: list}`` dict."""
    return isinstance(source, dict) and bool(source) and all(
        hasattr(v, "history") or isinstance(v, dict) for v in source.values())


def plot_gradient_norms(source: Any, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Draw each layer's gradient norm per epoch on a log scale (and its update ratio, if recorded) into a PNG.

    Layers are coloured from the input (dark) to the output (light), so vanishing
    gradients show as dark curves lying orders of magnitude below the light ones.

    Parameters
    ----------
    source : GradientMonitor, History, dict[str, list[float]], or dict[str, any of these]
        Anything holding ``grad_norm/<layer>`` (and optionally ``update_ratio/<layer>``)
        lists, one value per epoch: a :class:`~nnlib.callbacks.GradientMonitor`, a
        History it wrote into, or such a dict. A dict of them, ``{label: monitor}``,
        draws one row per entry with shared y-axes, to compare networks.
    path : str or PathLike
        Output file.
    title : str, optional

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        If a source holds no ``grad_norm/`` entries.
    """
    sources = list(source.items()) if _is_collection(source) else [(None, source)]
    rows = []
    for label, src in sources:
        logs, epochs = _gradient_logs(src)
        names = [k.split("/", 1)[1] for k in logs if k.startswith("grad_norm/")]
        if not names:
            raise ValueError("no grad_norm/<layer> entries to plot: train with callbacks=[nn.GradientMonitor()] "
                             f"and pass the monitor; got keys {sorted(logs)}")
        rows.append((label, logs, epochs, names))
    panels = [("grad_norm", "mean gradient norm per batch")]
    if any(f"update_ratio/{n}" in logs for _, logs, _, names in rows for n in names):
        panels.append(("update_ratio", "update ratio ||dw|| / ||w|| per epoch"))
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(6.5 * len(panels) + 2.5, 4.2 * len(rows)),
                             squeeze=False, sharey="col")
    colours = plt.get_cmap("viridis")
    for (label, logs, epochs, names), ax_row in zip(rows, axes):
        for col, (ax, (key, ylabel)) in enumerate(zip(ax_row, panels)):
            drawn = False
            for i, name in enumerate(names):
                values = logs.get(f"{key}/{name}") or []
                ys = [float(v) if v is not None and 0 < float(v) < float("inf") else float("nan") for v in values]
                if not any(y == y for y in ys):  # nothing positive and finite to put on a log axis
                    continue
                xs = [e + 1 for e in epochs] if epochs and len(epochs) == len(ys) else range(1, len(ys) + 1)
                ax.plot(list(xs), ys, marker="o", ms=3, label=name, color=colours(i / max(len(names) - 1, 1) * 0.9))
                drawn = True
            if drawn:
                ax.set_yscale("log")
                if col == len(panels) - 1:  # one legend per row, outside the axes
                    ax.legend(fontsize=7, ncol=1 + len(names) // 12, loc="center left", bbox_to_anchor=(1.01, 0.5))
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            if label:
                ax.set_title(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def plot_filters(model: Any, path: str | os.PathLike[str], title: str | None = None, max_filters: int = 64) -> str:
    """Draw the kernels of the model's first convolution layer, one small image per filter, into a PNG.

    Each filter ``weight[:, :, :, f]`` of shape (KH, KW, C_in) is drawn as a grey image of its
    (KH, KW) taps when ``C_in`` is 1, as colour when ``C_in`` is 3, and as the mean over the input
    channels otherwise; each is scaled to its own range, so the picture shows the pattern a filter
    responds to (edges and blobs after training), not its size.

    Parameters
    ----------
    model : Sequential
        A built model with a convolution layer (the first layer whose ``weight`` has 4 axes).
    path : str or PathLike
        Output file.
    title : str, optional
    max_filters : int, default 64
        Draw at most this many filters (the first ones).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        If the model has no built convolution layer.
    """
    conv = next((layer for layer in getattr(model, "layers", [])
                 if len(getattr(getattr(layer, "weight", None), "shape", ())) == 4), None)
    if conv is None:
        raise ValueError(f"plot_filters needs a built model with a Conv2D layer; {model!r} has none")
    import numpy as np

    kernels = np.asarray(conv.weight.value, dtype=np.float64)[..., :max(1, int(max_filters))]
    if kernels.shape[2] != 3:
        kernels = kernels.mean(axis=2, keepdims=True)
    low = kernels.min(axis=(0, 1, 2), keepdims=True)
    span = kernels.max(axis=(0, 1, 2), keepdims=True) - low
    kernels = (kernels - low) / np.where(span > 0, span, 1.0)
    plt = _pyplot()
    count = kernels.shape[3]
    cols = min(count, 8)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + (0.4 if title else 0)), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k < count:
            image = kernels[:, :, :, k]
            ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray", interpolation="nearest")
            ax.set_title(str(k), fontsize=7)
    fig.suptitle(title or f"{conv.name}: {count} filters of {conv.weight.shape[0]}x{conv.weight.shape[1]}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
