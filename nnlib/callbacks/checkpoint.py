"""ModelCheckpoint: save the model after an epoch, atomically, optionally only when it improved."""

from __future__ import annotations

import math
import os
import string

from .._validation import check_bool, check_path
from .base import Callback, check_monitor_args, monitored, require_logged

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Save the model after an epoch, optionally only when the monitored value improves.

    Every save goes through ``model.save``: the file is written to a temporary
    file in the same folder and moved into place with ``os.replace``, so a crash
    mid-save leaves the previous checkpoint intact.

    Parameters
    ----------
    path : str or os.PathLike
        Where to save. May hold ``str.format`` fields: ``{epoch}`` (1-based, as
        Keras) and any key of the epoch logs, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.nnlib"``.
        A missing folder is created.
    monitor : str, default "val_loss"
        Key of the epoch logs compared between epochs (only with ``save_best_only``).
    save_best_only : bool, default True
        Save only when ``monitor`` beats the best value seen so far by this
        callback (strictly; as Keras, the best value is kept across ``fit`` calls);
        otherwise save after every epoch.
    mode : {"min", "max"}, default "min"
        Whether lower or higher values of ``monitor`` are better.

    Attributes
    ----------
    best : float
        The best monitored value seen so far.
    best_epoch : int or None
        The 0-based epoch that reached ``best``.
    last_saved : str or None
        The path written by the most recent save.

    Examples
    --------
    >>> import nnlib as nn
    >>> ckpt = nn.ModelCheckpoint("best.nnlib", monitor="val_loss")  # doctest: +SKIP
    >>> model.fit(x, y, validation_split=0.2, callbacks=[ckpt])  # doctest: +SKIP
    """

    rank_zero_only = True  # it only writes: in a data-parallel fit, rank 0 alone runs it

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss", save_best_only: bool = True,
                 mode: str = "min") -> None:
        super().__init__()
        self.path = check_path(path, "ModelCheckpoint: path")
        try:
            self._fields = {field for _, field, _, _ in string.Formatter().parse(self.path) if field is not None}
        except ValueError as exc:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} is not a valid format string ({exc})") from None
        for field in self._fields:
            if not field or field.isdigit() or not field.isidentifier():
                raise ValueError(f"ModelCheckpoint: path {self.path!r} has the field {{{field}}}; only named fields "
                                 "such as {epoch} or {val_loss} are allowed (write {{ and }} for literal braces)")
        check_monitor_args("ModelCheckpoint", monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.save_best_only = check_bool(save_best_only, "ModelCheckpoint: save_best_only")
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.last_saved: str | None = None

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            require_logged("ModelCheckpoint", self.monitor, self.params)
        logged = self.params.get("metrics")
        unknown = sorted(self._fields - {"epoch"} - set(logged or self._fields))
        if unknown:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} names {unknown}, which fit does not log; "
                             f"available: ['epoch'] + {sorted(logged)}")
        if logged is not None and self._fields:
            try:  # a bad format spec such as {loss:d} fails now, not after the first epoch
                self.path.format(epoch=1, **dict.fromkeys(logged, 0.5))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise ValueError(f"ModelCheckpoint: cannot format path {self.path!r} ({exc})") from None

    def _better(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = monitored("ModelCheckpoint", self.monitor, logs)
            if not self._better(value):  # NaN is never better
                return
            self.best, self.best_epoch = value, epoch
        path = self.path.format(epoch=epoch + 1, **logs) if self._fields else self.path
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)
        self.last_saved = path
