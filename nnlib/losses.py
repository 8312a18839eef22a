"""Losses: layer-like objects with ``forward(y_pred, y_true) -> float`` and ``backward()``.

Every loss is a mean (over the batch, and for element-wise losses over outputs too),
so ``backward`` already carries the ``1/N``. A loss also validates targets at the
model's boundary (:meth:`Loss.prepare_targets`) and says how raw outputs are shown
to a user (:meth:`Loss.transform`: probabilities for the cross-entropies).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from ._buffers import cached_buffer, cached_ones
from .registry import Registry

__all__ = ["Loss", "SoftmaxCrossEntropy", "MSE", "BinaryCrossEntropy", "registry", "register", "get"]


def _numeric(y: Any, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == bool or y.dtype.kind not in "iuf":
        raise TypeError(f"{what} must hold numbers, got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError(f"{what} is empty (shape {y.shape})")
    return y


def _finite(y: np.ndarray, what: str) -> None:
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = y[~np.isfinite(y)].ravel()[0]
        raise ValueError(f"{what} contains non-finite values (e.g. {bad})")


class Loss:
    """Base class. Subclasses implement ``forward``, ``backward`` and ``symbolic``."""

    registered_name = "loss"
    #: True when :meth:`transform` keeps each row's argmax, so accuracy can skip it
    preserves_argmax = False
    #: the gradient this loss starts the backward pass with, in symbols (shown by nnlib.explain)
    derivative_text = ""

    def __init__(self) -> None:
        self._buffers: dict = {}

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        """Mean loss of a batch; caches what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        """dL/dy_pred for the last ``forward``, same shape as ``y_pred``."""
        raise NotImplementedError

    def transform(self, y_pred: np.ndarray) -> np.ndarray:
        """How raw model outputs are presented to a user (a new array)."""
        return np.array(y_pred, copy=True)

    def prepare_targets(self, y: Any, n_outputs: int, dtype: Any, what: str = "y") -> np.ndarray:
        """Validate targets ``y`` (named ``what`` in errors) for ``n_outputs`` outputs; cast once."""
        y = _numeric(y, what)
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(
                f"{what} must have shape (N, {n_outputs}) to match the model's {n_outputs} outputs, got {y.shape}"
            )
        _finite(y, what)
        return np.ascontiguousarray(y, dtype=dtype)

    def symbolic(self, sp: Any, y_pred: Any, y_true: np.ndarray) -> Any:
        """The loss as a sympy expression of a Matrix of output symbols."""
        raise NotImplementedError(f"{type(self).__name__} has no symbolic form")

    def get_config(self) -> dict[str, Any]:
        return {}

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return cached_buffer(self._buffers, key, shape, dtype)

    @staticmethod
    def _match(y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        y_true = np.asarray(y_true)
        if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_true = y_true.reshape(-1, 1)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}")
        return y_true

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_buffers"] = {}
        return state


registry = Registry("loss", base=Loss)
register = registry.register


@register("softmax_cross_entropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "cross_entropy")
class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused, from logits.

    ``L = -(1/N) sum_n sum_c t_nc log softmax(z_n)_c`` with the log-sum-exp trick, so
    any finite logits give a finite loss. Targets are integer labels of shape (N,)
    or rows of shape (N, C) (one-hot or probabilities).
    """

    preserves_argmax = True  # softmax is increasing in each logit

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        z = y_pred
        if z.ndim != 2 or z.shape[1] < 2:
            raise ValueError(f"softmax_cross_entropy needs logits of shape (N, C) with C >= 2, got {z.shape}")
        n, c = z.shape
        y_true = np.asarray(y_true)
        p = self._buffer("p", z.shape, z.dtype)
        row_max = F.row_max(z, self._buffer("zt", (c, n), z.dtype))
        np.subtract(z, row_max[:, None], out=p)  # shifted logits: exp cannot overflow
        if y_true.ndim == 1:
            if y_true.shape[0] != n or y_true.dtype.kind not in "iu":
                raise ValueError(f"labels must be integers of shape ({n},), got {y_true.dtype} {y_true.shape}")
            if y_true.min() < 0 or y_true.max() >= c:
                raise ValueError(f"labels must lie in [0, {c}), got values in [{y_true.min()}, {y_true.max()}]")
            # flat position of each row's label, for picking here and for backward's "- 1"
            label_at = self._row_starts(n, c) + y_true.astype(np.intp, copy=False)
            picked = p.reshape(-1).take(label_at)
            target_mass = None
        else:
            if y_true.shape != z.shape:
                raise ValueError(f"targets of shape {y_true.shape} do not match logits of shape {z.shape}")
            picked = np.einsum("nc,nc->n", y_true, p)
            target_mass = y_true.sum(axis=1)
            label_at = None
        np.exp(p, out=p)
        row_sum = F.row_sum(p, cached_ones(self._buffers, c, p.dtype))
        p /= row_sum[:, None]
        log_z = np.log(row_sum)
        per_row = log_z - picked if target_mass is None else log_z * target_mass - picked
        self._p, self._y, self._label_at = p, y_true, label_at
        self._target_mass = target_mass
        return float(per_row.sum()) / n

    # L = -(1/N) sum t log softmax(z)  =>  dz = (softmax(z) * sum_c t - t) / N
    # (for labels or one-hot rows sum_c t = 1, giving the textbook (p - onehot) / N)
    derivative_text = "dL/dz = (softmax(z) - onehot(y)) / N"

    def backward(self) -> np.ndarray:
        p, y = self._p, self._y
        n = p.shape[0]
        dz = self._buffer("dz", p.shape, p.dtype)
        if self._target_mass is None:
            np.multiply(p, 1.0 / n, out=dz)
            dz.reshape(-1)[self._label_at] -= 1.0 / n
        else:
            np.multiply(p, self._target_mass[:, None], out=dz)
            dz -= y
            dz *= 1.0 / n
        return dz

    def _row_starts(self, n: int, c: int) -> np.ndarray:
        """``[0, c, 2c, ...]`` of length n: the flat index where each row of an (n, c) array starts."""
        starts = self._buffers.get(("row_starts", n, c))
        if starts is None:
            starts = self._buffers[("row_starts", n, c)] = np.arange(0, n * c, c, dtype=np.intp)
        return starts

    def transform(self, y_pred):
        return F.softmax(y_pred)

    def prepare_targets(self, y, n_outputs, dtype, what="y"):
        if n_outputs < 2:
            raise ValueError(
                f"softmax_cross_entropy needs a model with at least 2 outputs, this one has {n_outputs}; "
                "use binary_cross_entropy for a single logit"
            )
        y = _numeric(y, what)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim == 1:
            if y.dtype.kind == "f":
                _finite(y, what)
                if not np.array_equal(y, np.round(y)):
                    bad = y[y != np.round(y)][0]
                    raise ValueError(
                        f"{what} holds fractional labels (e.g. {bad}); softmax_cross_entropy expects integer "
                        f"labels in [0, {n_outputs}) or one-hot rows of width {n_outputs}"
                    )
            if y.min() < 0 or y.max() >= n_outputs:
                raise ValueError(
                    f"{what}: labels must lie in [0, {n_outputs}) for a model with {n_outputs} outputs, "
                    f"got values in [{y.min()}, {y.max()}]"
                )
            return y.astype(np.intp)
        return super().prepare_targets(y, n_outputs, dtype, what)

    def symbolic(self, sp, y_pred, y_true):
        n, c = y_pred.shape
        targets = F.one_hot(y_true, c, np.float64) if np.asarray(y_true).ndim == 1 else y_true
        total = 0
        for i in range(n):
            log_norm = sp.log(sum(sp.exp(y_pred[i, j]) for j in range(c)))
            total += sum(-float(targets[i, j]) * (y_pred[i, j] - log_norm) for j in range(c))
        return total / n


@register("mse", "mean_squared_error")
class MSE(Loss):
    """Mean squared error over all elements, ``L = mean((y_pred - y_true)^2)`` (no 1/2)."""

    preserves_argmax = True  # the transform is the identity

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        y_true = self._match(y_pred, y_true)
        diff = np.subtract(y_pred, y_true, out=self._buffer("diff", y_pred.shape, y_pred.dtype))
        self._diff = diff
        return float(np.vdot(diff, diff)) / diff.size

    # L = (1/M) sum (y - t)^2 over M = N * D elements  =>  dy = 2 (y - t) / M
    derivative_text = "dL/dy = 2 (y - t) / (N D)"

    def backward(self) -> np.ndarray:
        dy = self._buffer("dy", self._diff.shape, self._diff.dtype)
        return np.multiply(self._diff, 2.0 / self._diff.size, out=dy)

    def symbolic(self, sp, y_pred, y_true):
        y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
        n, d = y_pred.shape
        return sum((y_pred[i, j] - float(y_true[i, j])) ** 2 for i in range(n) for j in range(d)) / (n * d)


@register("binary_cross_entropy", "binary_crossentropy")
class BinaryCrossEntropy(Loss):
    """Sigmoid followed by binary cross-entropy, fused, from logits.

    ``L = mean(-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)))``, computed as
    ``mean(max(z, 0) - t z + log(1 + exp(-|z|)))`` so large logits stay finite.
    Targets lie in [0, 1], of shape (N,) for one output or (N, D).
    """

    def forward(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        y_true = self._match(y_pred, y_true)
        z = y_pred
        per_elem = np.maximum(z, 0) - y_true * z + np.log1p(np.exp(-np.abs(z)))
        self._z, self._t = z, y_true
        return float(per_elem.mean())

    # L = (1/M) sum softplus(z) - t z  =>  dz = (sigmoid(z) - t) / M
    derivative_text = "dL/dz = (sigmoid(z) - t) / (N D)"

    def backward(self) -> np.ndarray:
        dz = F.sigmoid(self._z, out=self._buffer("dz", self._z.shape, self._z.dtype))
        dz -= self._t
        dz *= 1.0 / dz.size
        return dz

    def transform(self, y_pred):
        return F.sigmoid(np.asarray(y_pred))

    def prepare_targets(self, y, n_outputs, dtype, what="y"):
        y = super().prepare_targets(y, n_outputs, dtype, what)
        if y.min() < 0 or y.max() > 1:
            raise ValueError(f"{what}: binary_cross_entropy targets must lie in [0, 1], "
                             f"got values in [{y.min()}, {y.max()}]")
        return y

    def symbolic(self, sp, y_pred, y_true):
        y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
        n, d = y_pred.shape
        total = 0
        for i in range(n):
            for j in range(d):
                s = 1 / (1 + sp.exp(-y_pred[i, j]))
                t = float(y_true[i, j])
                total += -t * sp.log(s) - (1 - t) * sp.log(1 - s)
        return total / (n * d)


def get(identifier: Any, **kwargs: Any) -> Loss:
    """Resolve a loss name (or alias), class, instance or config dict to a :class:`Loss`."""
    return registry.get(identifier, **kwargs)
