"""BatchNormalization: batch statistics in training, running statistics at inference (Keras's conventions)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._validation import check_number
from ..parameter import Parameter
from .base import Layer, registry

__all__ = ["BatchNormalization"]


@registry.register("batch_normalization", "batch_norm")
class BatchNormalization(Layer):
    """Batch normalization (Ioffe & Szegedy) over the batch axis, Keras's conventions.

    Statistics are per feature of flat samples ``(N, D)``, and per channel of images
    ``(N, H, W, C)`` (over ``N, H, W``: Keras's ``axis=-1``, PyTorch's BatchNorm2d);
    ``D`` below stands for the last axis.

    Training: with the batch mean ``mu`` and biased variance ``var`` of each feature,
    ``x_hat = (x - mu) / sqrt(var + eps)`` and ``y = gamma * x_hat + beta``; the
    running statistics move as ``running = momentum * running + (1 - momentum) * batch``
    (Keras's form and default, momentum=0.99; PyTorch writes the same rule with
    ``1 - momentum`` = 0.1 and keeps the unbiased variance). Inference: the same with
    ``moving_mean`` and ``moving_variance`` in place of the batch statistics.

    Parameters
    ----------
    momentum : float in [0, 1), default 0.99
        Weight of the old running statistics (Keras's meaning and default).
    eps : float > 0, default 1e-3
        Added to the variance (Keras's default; PyTorch uses 1e-5).
    name : str, optional

    Notes
    -----
    In a data-parallel fit (:class:`nnlib.distributed.DataParallel`) each process holds a
    slice of the batch; the strategy then sets :attr:`replica_sum` and the batch statistics
    and the sums in the backward pass are taken over the whole batch, across processes
    (synchronized batch normalization), so the result is the one-process result.

    Attributes
    ----------
    gamma : Parameter of shape (D,)
        Learnable scale, initialized to ones.
    beta : Parameter of shape (D,)
        Learnable shift, initialized to zeros.
    moving_mean, moving_variance : ndarray of shape (D,)
        Running statistics (zeros and ones at first); non-trainable state, see
        :meth:`get_state`.
    """

    replica_sum = None  # class defaults: models pickled before data-parallel training still fit
    _rows_in_batch = 0

    derivative_text = ("normalizes with the batch mean and variance, so the gradient handed left loses its batch "
                       "mean and its component along x_hat: dx = gamma/sigma * (g - mean_n g - x_hat mean_n(g x_hat)); "
                       "dgamma = sum_n g x_hat, dbeta = sum_n g")

    def __init__(self, momentum: float = 0.99, eps: float = 1e-3, name: str | None = None,
                 input_shape: int | tuple[int, ...] | None = None) -> None:
        super().__init__(name, input_shape)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        self.eps = check_number(eps, "eps", 0.0, low_open=True)
        self.gamma: Parameter | None = None
        self.beta: Parameter | None = None
        self.moving_mean: np.ndarray | None = None
        self.moving_variance: np.ndarray | None = None
        #: None, or a function summing a float array in place over the replicas of a data-parallel fit
        self.replica_sum: Callable[[np.ndarray], None] | None = None
        self._rows_in_batch = 0  # the whole batch's rows (N, or N H W) in the last synchronized pass

    def build(self, input_shape, rng, dtype=np.float32):
        d = super().build(input_shape, rng, dtype)[-1]
        prefix = f"{self.name}/" if self.name else ""
        self.gamma = Parameter(np.ones(d, dtype=self.dtype), prefix + "gamma")
        self.beta = Parameter(np.zeros(d, dtype=self.dtype), prefix + "beta")
        self.moving_mean = np.zeros(d, dtype=self.dtype)
        self.moving_variance = np.ones(d, dtype=self.dtype)
        return self.output_shape

    def parameter_shapes(self, input_shape):
        d = self.compute_output_shape(input_shape)[-1]
        return [(d,), (d,)]

    def parameters(self):
        return [] if self.gamma is None else [self.gamma, self.beta]

    # x_hat = (x - mu) / sqrt(var + eps), y = gamma x_hat + beta, mu and var over the batch (and H, W),
    # written on (M, D) views: M = N for flat samples, N H W for images
    #   =>  dgamma = sum_n g x_hat,  dbeta = sum_n g,
    #       dx = gamma / sqrt(var + eps) * (g - mean_n g - x_hat * mean_n(g x_hat))   (training)
    #       dx = gamma / sqrt(moving_variance + eps) * g                               (inference)
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["replica_sum"] = None  # a strategy's bound method: a copy made during a fit trains on its own
        return state

    def forward(self, x, training=False):
        if not self.built or self.gamma is None:
            raise RuntimeError(f"{self!r} is not built: call build(input_shape, rng) or use it in a model")
        self._check_input(x)
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n = x.shape[0]
        xhat = self._buffer("x_hat", x.shape)
        if training and self.replica_sum is not None:  # statistics of the whole batch, over every replica
            totals = np.append(x.sum(axis=0, dtype=np.float64), n)  # float64: the row count stays exact
            self.replica_sum(totals)
            n = self._rows_in_batch = int(totals[-1])
            mean = (totals[:-1] / n).astype(self.dtype)
            np.subtract(x, mean, out=xhat)
            var = np.einsum("nd,nd->d", xhat, xhat)
            self.replica_sum(var)
            var /= n
        elif training:
            mean = x.mean(axis=0, dtype=self.dtype)
            np.subtract(x, mean, out=xhat)
            var = np.einsum("nd,nd->d", xhat, xhat) / n
        if training:
            self.moving_mean *= self.momentum
            self.moving_mean += (1.0 - self.momentum) * mean
            self.moving_variance *= self.momentum
            self.moving_variance += (1.0 - self.momentum) * var
        else:
            np.subtract(x, self.moving_mean, out=xhat)
            var = self.moving_variance
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= inv_std
        y = np.multiply(xhat, self.gamma.value, out=self._buffer("y", x.shape))
        y += self.beta.value
        self._xhat, self._inv_std, self._training = xhat, inv_std, training
        return y.reshape(shape)

    def backward(self, grad_out):
        shape = grad_out.shape
        g, xhat = grad_out.reshape(self._xhat.shape), self._xhat
        n = g.shape[0]
        np.sum(g, axis=0, out=self.beta.grad)
        np.einsum("nd,nd->d", g, xhat, out=self.gamma.grad)
        if not self.needs_input_grad:
            return None
        dx = self._buffer("dx", g.shape)
        if self._training:
            sum_g, sum_g_xhat = self.beta.grad, self.gamma.grad
            if self.replica_sum is not None:  # the means below are over the whole batch; the grads stay local
                sums = np.concatenate([sum_g, sum_g_xhat])
                self.replica_sum(sums)
                sum_g, sum_g_xhat, n = sums[:sum_g.shape[0]], sums[sum_g.shape[0]:], self._rows_in_batch
            np.multiply(xhat, sum_g_xhat / n, out=dx)  # x_hat * mean_n(g x_hat)
            dx += sum_g / n  # + mean_n g
            np.subtract(g, dx, out=dx)
            dx *= self.gamma.value * self._inv_std
        else:
            np.multiply(g, self.gamma.value * self._inv_std, out=dx)
        return dx.reshape(shape)

    def symbolic(self, sp, x, gamma, beta):
        """The training-mode function: batch mean and variance (over every axis but the last)
        are part of the formula."""
        rows = x.reshape(-1, x.shape[-1])
        n, d = rows.shape
        out = np.empty(rows.shape, dtype=object)
        for j in range(d):
            mu = sum(rows[:, j]) / n
            var = sum((v - mu) ** 2 for v in rows[:, j]) / n
            for i in range(n):
                out[i, j] = gamma[j] * (rows[i, j] - mu) / sp.sqrt(var + self.eps) + beta[j]
        return out.reshape(x.shape)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "eps": self.eps}

    def get_state(self):
        """``{"moving_mean": (D,), "moving_variance": (D,)}`` (copies; empty before build)."""
        if self.moving_mean is None:
            return {}
        return {"moving_mean": self.moving_mean.copy(), "moving_variance": self.moving_variance.copy()}

    def _set_state(self, state):
        for key in ("moving_mean", "moving_variance"):
            value = np.asarray(state[key])
            if value.dtype == bool or value.dtype.kind not in "iuf" or not np.isfinite(value).all():
                raise ValueError(f"{self!r}.set_state: {key} must hold finite numbers")
        if (np.asarray(state["moving_variance"]) < 0).any():
            raise ValueError(f"{self!r}.set_state: moving_variance must be >= 0")
        self.moving_mean[...] = state["moving_mean"]
        self.moving_variance[...] = state["moving_variance"]
