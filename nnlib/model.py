"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

The model drives its layers only through their public ``forward`` and ``backward``:
the backward pass is the chain rule applied right to left, each layer multiplying
the gradient from its right by its own local derivative. The fit loop lives in
:mod:`nnlib.training`, model files in :mod:`nnlib.saving`; the model calls both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import _blas, saving, training
from . import losses as losses_module
from . import metrics as metrics_module
from . import onnx as onnx_export
from . import optimizers as optimizers_module
from ._validation import check_float_dtype, check_int, check_positive_int, check_shape, format_shape
from .callbacks import Callback, History
from .data import INIT_STREAM, as_batch, check_features
from .layers import AveragePooling2D, Conv2D, Layer, MaxPooling2D, ReLU
from .parameter import Parameter, pack

__all__ = ["Sequential"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@saving.models.register("sequential")
class Sequential:
    """A linear stack of layers, trained with ``compile`` then ``fit``.

    Parameters
    ----------
    layers : iterable of Layer, optional
    seed : int >= 0, optional
        Seeds weight initialization, the validation split and the shuffle of each
        epoch (epoch k uses a generator seeded from ``(seed, k)``), so runs repeat
        exactly and can be resumed. None draws a seed from the OS and keeps it in
        ``self.seed``.
    dtype : {"float32", "float64"}, default "float32"
        Parameters, activations and gradients; inputs are cast once at the boundary.
    name : str, default "sequential"

    Examples
    --------
    >>> import nnlib as nn
    >>> model = nn.Sequential([nn.Dense(16, input_dim=4, activation="relu"), nn.Dense(3)], seed=0)
    >>> model.compile(optimizer="adam", loss="softmax_cross_entropy", metrics=["accuracy"])
    """

    def __init__(self, layers: Iterable[Layer] | None = None, seed: int | None = None,
                 dtype: Any = "float32", name: str = "sequential") -> None:
        self.dtype = check_float_dtype(dtype)
        self.seed = int(np.random.SeedSequence().entropy % (2**63)) if seed is None else check_int(seed, "seed", 0)
        self.name = name
        self.layers: list[Layer] = []
        self.optimizer: optimizers_module.Optimizer | None = None
        self.loss: losses_module.Loss | None = None
        self.metrics: list[tuple[str, Callable]] = []
        self.stop_training = False
        self.stop_reason = ""
        self.history: History | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self._params: list[Parameter] = []
        self._flat_grads: np.ndarray | None = None
        self._first_trainable = 0
        self._window_major: set[int] = set()  # the Conv2D layers that hand window-major blocks to their pooling
        self._inference_fused = False  # the last forward ran a Conv2D and its pooling as one inference pass
        for layer in layers or []:
            self.add(layer)
        first = self.layers[0] if self.layers else None
        if first is not None and first.declared_input_shape is not None:
            self.build(first.declared_input_shape)

    # -- structure ----------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.output_shape is not None

    @property
    def input_dim(self) -> int | None:
        """D_in for flat samples (``input_shape == (D_in,)``), None for images or before build."""
        return self.input_shape[0] if self.input_shape is not None and len(self.input_shape) == 1 else None

    @property
    def output_dim(self) -> int | None:
        """D_out, the width of the outputs (``output_shape == (D_out,)``), or None."""
        return self.output_shape[0] if self.output_shape is not None and len(self.output_shape) == 1 else None

    def add(self, layer: Layer) -> None:
        """Append a layer; it gets a unique name such as ``dense_2`` if it has none."""
        if not isinstance(layer, Layer):
            raise TypeError(f"layers must be nnlib Layer instances, got {layer!r}")
        if self.built:
            raise RuntimeError("cannot add layers to a built model")
        if any(layer is other for other in self.layers):
            raise ValueError(f"{layer!r} is already in the model")
        if layer.name is None:
            kind = getattr(type(layer), "registered_name", None) or _snake(type(layer).__name__)
            layer.name = f"{kind}_{len(self.layers)}"
        if any(layer.name == other.name for other in self.layers):
            raise ValueError(f"layer name {layer.name!r} is already used in the model")
        self.layers.append(layer)

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Create every layer's parameters for samples of shape ``input_shape``.

        ``input_shape`` is per sample, as Keras's: ``784`` or ``(784,)`` for flat
        inputs, ``(28, 28, 1)`` for channels-last images. Every layer's shape is
        checked before any parameter is created. Parameters end up as views into one
        contiguous buffer (and their gradients into another), so optimizers update
        them all with whole-buffer operations.
        """
        input_shape = check_shape(input_shape, "input_shape")
        self._infer_output_shape(input_shape)  # every layer's shape checks, before anything is built
        rng = np.random.default_rng([self.seed, INIT_STREAM])
        shape = input_shape
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "next_activation") and i + 1 < len(self.layers):
                layer.next_activation = self.layers[i + 1]
            shape = layer.build(shape, rng, self.dtype)
        self._move_relus_past_max_pooling()
        self._pair_convolutions_with_pooling()
        self._params = [p for layer in self.layers for p in layer.parameters()]
        self._flat_grads = pack(self._params, self.dtype)[1]
        # Nobody needs dL/dx at or before the first layer that has parameters.
        trainable = [i for i, layer in enumerate(self.layers) if layer.parameters()]
        self._first_trainable = trainable[0] if trainable else 0
        for i, layer in enumerate(self.layers):
            layer.needs_input_grad = i != self._first_trainable or not trainable
        self.input_shape, self.output_shape = input_shape, tuple(shape)

    def _move_relus_past_max_pooling(self) -> None:
        """Where a ReLU (a layer, or a Conv2D's activation) comes right before MaxPooling2D, the pooling layer
        applies it after pooling, to 4x fewer elements after a 2x2 pool (the convnet's usual pattern). Both
        are monotone, so outputs and gradients stay the same bit for bit (see MaxPooling2D.relu_after); only
        the layers' own outputs in between (what ``layer.forward`` returns inside the model) are taken before
        the ReLU."""
        for layer in self.layers:
            if isinstance(layer, ReLU):
                layer.moved_past_pooling = False
            elif isinstance(layer, Conv2D):
                layer.activation_moved_past_pooling = False
            elif isinstance(layer, MaxPooling2D):
                layer.relu_after = False
        for before, pool in zip(self.layers, self.layers[1:]):
            if not isinstance(pool, MaxPooling2D):
                continue
            if type(before) is ReLU:
                before.moved_past_pooling = pool.relu_after = True
            elif isinstance(before, Conv2D) and type(before.activation) is ReLU:
                before.activation_moved_past_pooling = pool.relu_after = True

    def _pair_convolutions_with_pooling(self) -> None:
        """Where a Conv2D (no activation, or its ReLU moved past the pooling) comes right before a 2x2, stride-2
        MaxPooling2D or AveragePooling2D with no padding cell, the convolution computes only the outputs the
        pooling reads, in the order of its windows (window-major blocks), during this model's passes: the
        pooling then reads four contiguous blocks instead of strided cells, and an odd last row or column
        that it drops is never computed. Values and gradients are the same; only the convolution's own
        output inside ``forward`` is in that layout (``layer.forward`` called alone, as ``explain`` does,
        uses the usual one). In inference (``forward(x, training=False)``: predict, evaluate) each pair runs as
        one pass over blocks of a few images (:meth:`Conv2D.forward_pooled`), whose patches and products stay
        in cache; its values are those of the two layers to rounding."""
        self._window_major = set()
        for layer in self.layers:
            if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
                layer.window_major_input = False
        for i, (conv, pool) in enumerate(zip(self.layers, self.layers[1:])):
            # exact types: a subclass may override forward without the window_major argument
            if type(conv) is Conv2D and type(pool) in (MaxPooling2D, AveragePooling2D) \
                    and (conv.activation is None or conv.activation_moved_past_pooling) \
                    and pool.can_read_blocks(conv.output_shape):
                pool.window_major_input = True
                self._window_major.add(i)

    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, in layer order."""
        return list(self._params)

    def count_params(self) -> int:
        return sum(p.size for p in self._params)

    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Iterable[Any] | None = None) -> None:
        """Choose the optimizer, the loss and the metrics to report.

        Parameters
        ----------
        optimizer : str, Optimizer or dict, default "adam"
        loss : str, Loss or dict
            A registered name such as ``"softmax_cross_entropy"`` or ``"mse"``.
        metrics : list of str or callable, optional
            Names such as ``"accuracy"``, or ``f(y_true, y_out) -> float``.
        """
        if loss is None:
            raise ValueError(f"compile needs a loss; valid names are: {', '.join(losses_module.registry.names())}")
        if isinstance(metrics, str):
            metrics = [metrics]
        resolved = (losses_module.get(loss), optimizers_module.get(optimizer),
                    [metrics_module.get(m) for m in (metrics or [])])
        self.loss, self.optimizer, self.metrics = resolved  # all or nothing

    # -- the two passes -----------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Raw outputs ``(N, *output_shape)`` of a checked batch ``x`` ``(N, *input_shape)`` (see
        :meth:`prepare_inputs`),
        left to right; ``training`` turns on Dropout masks and batch statistics. The array is the
        last layer's buffer: valid until the next pass."""
        if not self.built:
            raise RuntimeError("the model is not built: fit it, or call build(input_shape), before forward()")
        layers, i = self.layers, 0
        self._inference_fused = not training and bool(self._window_major)  # then backward has nothing to use
        while i < len(layers):
            if i not in self._window_major:
                x = layers[i].forward(x, training)
            elif training:
                x = layers[i].forward(x, training, window_major=True)
            else:  # inference: the convolution and its pooling in one pass over blocks of images
                pool = layers[i + 1]
                x = layers[i].forward_pooled(x, pool.pool_kind, relu=pool.pool_kind == "max" and pool.relu_after)
                i += 1
            i += 1
        return x

    def backward(self, grad: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """The chain rule right to left from ``grad = dL/d(output)`` ``(N, D_out)``: fills every
        parameter's ``grad``; returns dL/dx ``(N, D_in)`` when ``input_grad`` (nobody needs it in
        training), else None."""
        if not self.built:
            raise RuntimeError("the model is not built: fit it, or call build(input_shape), before backward()")
        if self._inference_fused:
            raise RuntimeError("backward() follows forward(x, training=True): this model's inference pass "
                               "(training=False) runs each Conv2D and its pooling as one pass and keeps nothing "
                               "for backward")
        first_trainable = self.layers[self._first_trainable]
        first_trainable.needs_input_grad = input_grad or not self._params
        try:
            for layer in reversed(self.layers[0 if input_grad else self._first_trainable:]):
                grad = layer.backward(grad)
        finally:
            first_trainable.needs_input_grad = not self._params
        return grad if input_grad else None

    def train_step(self, xb: np.ndarray, yb: np.ndarray, update: bool = True) -> tuple[float, np.ndarray]:
        """Forward, loss, backward and (``update``) the optimizer step on a batch checked by
        :meth:`prepare_inputs`; returns ``(loss, raw outputs (N, D_out))``. The loss and gradients are
        checked before the weights are touched: a non-finite one raises FloatingPointError, nothing updated."""
        out = self.forward(xb, training=True)
        loss = self.loss.forward(out, yb)
        self.check_loss(loss)
        self.backward(self.loss.backward())
        self.check_gradients()
        if update:
            self.optimizer.step(self._params)
        return loss, out

    def check_loss(self, loss: float) -> None:
        """FloatingPointError, saying whether the weights are still finite, unless ``loss`` is finite."""
        if not math.isfinite(loss):
            broken = [p.name for p in self._params if not np.isfinite(p.value).all()]
            where = (f"the weights of {', '.join(broken)} are no longer finite: an earlier update overflowed"
                     if broken else "the weights were left as they were before this step")
            raise FloatingPointError(
                f"the loss became {loss}; {where} (a smaller lr or inputs scaled to about [0, 1] usually cure this)"
            )

    def check_gradients(self) -> None:
        """FloatingPointError naming the first parameter whose gradient is not finite, if one is."""
        # One sum of |g| detects any inf/NaN among all gradients (or a sum too large to
        # be useful); only then look for the culprit, before the weights are touched.
        grad_size = _blas.abs_sum(self._flat_grads) if self._params else 0.0
        if not math.isfinite(grad_size):
            for p in self._params:
                if not np.isfinite(p.grad).all():
                    raise FloatingPointError(
                        f"the gradient of {p.name} is not finite; the weights were left as they were "
                        "before this step (a smaller lr or clipping usually cures this)"
                    )

    @property
    def gradient_buffer(self) -> np.ndarray | None:
        """The one contiguous array ``(P,)`` every parameter's ``grad`` is a view of (None before build):
        what a data-parallel fit sums over processes in one call."""
        return self._flat_grads

    # -- boundary checks ----------------------------------------------------------
    def require_compiled(self, what: str) -> None:
        """RuntimeError naming ``what`` (a method) unless ``compile`` has run."""
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"call model.compile(optimizer=..., loss=...) before {what}()")

    def prepare_inputs(self, x: Any, y: Any, what: str = "x", y_what: str = "y",
                       sample_shape: tuple[int, ...] | None = None,
                       build: bool = True, lazy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(x (N, *input_shape), y)`` checked as ``fit`` checks them and cast once to the model's dtype,
        the targets as the loss reads them (needs ``compile``). ``what``/``y_what`` name the arguments in
        errors, ``sample_shape`` is an unbuilt model's expected per-sample shape; ``build`` builds an
        unbuilt model once every check has passed (with False nothing changes: ``fit`` checks more first).
        ``lazy`` leaves a memory-mapped ``x`` in its file and dtype (see :func:`nnlib.data.check_features`)."""
        x = check_features(x, what, self.dtype, self.input_shape or sample_shape, any_rank=True, lazy=lazy)
        try:
            n_targets = len(y)
        except TypeError:
            raise TypeError(f"{y_what} must be an array, got {type(y).__name__}") from None
        if n_targets != x.shape[0]:
            raise ValueError(f"{what} and {y_what} have different lengths: {x.shape[0]} and {n_targets}")
        output_shape = self.output_shape if self.built else self._infer_output_shape(x.shape[1:])
        if len(output_shape) != 1:
            raise ValueError(f"the model's outputs have shape {format_shape(output_shape, 'None')}; the losses take "
                             "(N, D) outputs: end the model with nn.Flatten() or nn.GlobalAveragePooling2D()")
        y = self.loss.prepare_targets(y, output_shape[0], self.dtype, y_what)
        if build and not self.built:
            self.build(x.shape[1:])
        return x, y

    def _infer_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Every layer's output shape in turn, checked, without building anything."""
        if not self.layers:
            raise ValueError("the model has no layers")
        shape = input_shape
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return tuple(shape)

    # -- training -----------------------------------------------------------------
    def fit(self, x: Any, y: Any = None, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple[Any, Any] | None = None, validation_split: float | None = None,
            shuffle: bool = True, tol: float | None = 1e-4, patience: int = 5, monitor: str = "loss",
            callbacks: list[Callback] | None = None, verbose: int = 1, initial_epoch: int = 0,
            strategy: training.Strategy | None = None) -> History:
        """Train for up to ``epochs`` epochs of mini-batch steps.

        Parameters
        ----------
        x : array-like of shape (N, *input_shape), or a dataset
            ``(N, D_in)`` for flat samples, ``(N, H, W, C)`` for images (channels last). A
            memory-mapped array stays in its file: each batch is cast. A dataset, as Keras's
            ``PyDataset``: ``len(x)`` batches an epoch, ``x[i] -> (x_batch, y_batch)``, each
            checked before its step (an error names ``x[i]``), in order (shuffling is the
            dataset's own), and ``x.on_epoch_end()``, if it has one, after each epoch's batches
            and validation; ``y`` must then be None, ``batch_size`` and ``shuffle`` do not apply.
        y : array-like of shape (N,) or (N, D_out)
            Integer labels or one-hot rows for softmax cross-entropy; values for MSE.
        epochs : int > 0, default 1
            Index of the last epoch (as Keras): epochs ``initial_epoch .. epochs-1`` run.
        batch_size : int > 0, default 32
            The last, smaller batch is kept.
        validation_data : (x_val, y_val) or a dataset, optional
        validation_split : float in (0, 1), optional
            Holds out a seeded random fraction of (x, y), stratified by class for
            integer labels (not Keras's last rows).
        shuffle : bool, default True
            Epoch k's order comes from a generator seeded with (seed, k).
        tol : float >= 0 or None, default 1e-4
            The loss-change stop: an epoch is "no improvement" when
            ``monitor > best - tol``; training stops after ``patience`` of them in
            a row. None disables it.
        patience : int >= 1, default 5
        monitor : str, default "loss"
            ``"loss"``, ``"val_loss"`` or another key of the epoch logs.
        callbacks : list of Callback, optional
            Called in list order, then the stop rule, the progress output and
            History last (it records what the others add to an epoch's logs).
        verbose : {0, 1, 2}, default 1
            0 silent, 1 a progress bar on a terminal (else a line per epoch),
            2 a line per epoch.
        initial_epoch : int >= 0, default 0
            Epoch to start at, to resume a run.
        strategy : nnlib.distributed.DataParallel, optional
            Train over MPI processes, each taking its slice of every batch: the result is
            the one-process result, to rounding (see :class:`nnlib.distributed.DataParallel`).

        Returns
        -------
        History
            Per-epoch ``loss``, metrics, ``val_*`` and why training stopped.
        """
        return training.fit(self, x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                            validation_split=validation_split, shuffle=shuffle, tol=tol, patience=patience,
                            monitor=monitor, callbacks=callbacks, verbose=verbose, initial_epoch=initial_epoch,
                            strategy=strategy)

    def train_on_batch(self, x: Any, y: Any) -> float:
        """One forward pass, backward pass and optimizer step on (x, y); returns the loss."""
        self.require_compiled("train_on_batch")
        x, y = self.prepare_inputs(x, y)
        return self.train_step(x, y)[0]

    def loss_and_gradients(self, x: Any, y: Any) -> tuple[float, list[np.ndarray]]:
        """The loss on (x, y) and its gradients, aligned with :meth:`get_weights`; no update.

        Returns
        -------
        loss : float
        grads : list of ndarray
            Copies: ``[dW1 (D_in, D_out), db1 (D_out,), ...]``.
        """
        self.require_compiled("loss_and_gradients")
        x, y = self.prepare_inputs(x, y)
        loss, _ = self.train_step(x, y, update=False)
        return loss, [p.grad.copy() for p in self._params]

    # -- inference ----------------------------------------------------------------
    def evaluate(self, x: Any, y: Any = None, batch_size: int | None = None) -> dict[str, float]:
        """Loss and metrics on (x, y) in inference mode.

        ``x`` may be a dataset (``len(x)`` batches, ``x[i] -> (x_batch, y_batch)``, as Keras's
        ``PyDataset``), with ``y`` None; each batch is checked as ``fit`` checks it.

        Returns
        -------
        dict
            ``{"loss": float, <metric>: float, ...}``, means over all samples.
        """
        self.require_compiled("evaluate")
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        if not self.built:
            raise RuntimeError("the model is not built: fit it, or call build(input_shape), before evaluate()")
        if training.is_dataset(x):
            if y is not None:
                raise ValueError("y must be None when x is a dataset: its batches hold the targets")
            return training.evaluate_dataset(self, x)
        if y is None:
            raise TypeError("evaluate() needs y with array inputs (only a dataset holds its own targets)")
        x, y = self.prepare_inputs(x, y, lazy=True)
        return training.evaluate_arrays(self, x, y, batch_size=batch_size)

    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Outputs for ``x`` as a user reads them, in a new array.

        Probabilities for softmax or binary cross-entropy, raw values for MSE (or
        before ``compile``).

        Parameters
        ----------
        x : array-like of shape (N, *input_shape), or a dataset
            A dataset's ``x[i]`` is a batch, or a tuple whose first item is one.
        batch_size : int, optional
            Samples per forward pass (default 1024, fewer for images: see
            :func:`nnlib.training.inference_chunk`); only memory use depends on it.

        Returns
        -------
        ndarray of shape (N, *output_shape)
        """
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        if training.is_dataset(x):  # each batch: x_batch, or a tuple whose first item is it
            parts = []
            for i in range(training.dataset_length(x, "x")):
                item = training.dataset_item(x, i, "x")
                parts.append(self.predict(item[0] if isinstance(item, tuple) else item, batch_size))
            return np.concatenate(parts)
        x = check_features(x, "x", self.dtype, self.input_shape, any_rank=True, lazy=True)
        if not self.built:
            self.build(x.shape[1:])
        batch_size = batch_size or training.inference_chunk(self)
        result = np.empty((x.shape[0], *self.output_shape), dtype=self.dtype)
        with training.parallel_for(self):
            for start in range(0, x.shape[0], batch_size):
                out = self.forward(as_batch(x[start:start + batch_size], self.dtype), training=False)
                result[start:start + out.shape[0]] = out if self.loss is None else self.loss.transform(out)
        return result

    # -- weights ------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter: ``[W1 (D_in, D_out), b1 (D_out,), W2, b2, ...]``."""
        return [p.value.copy() for p in self._params]

    def set_weights(self, weights: list[Any]) -> None:
        """Copy ``weights`` (as from :meth:`get_weights`) into the model, cast to its dtype.

        Every array is checked (count, shape, finite numbers) before any is written.
        """
        if not self.built:
            raise RuntimeError("the model is not built: call build(input_shape) before set_weights()")
        weights = list(weights)
        if len(weights) != len(self._params):
            raise ValueError(f"set_weights expected {len(self._params)} arrays, got {len(weights)}")
        arrays = []
        for i, (w, p) in enumerate(zip(weights, self._params)):
            a = np.asarray(w)
            if a.dtype == bool or a.dtype.kind not in "iuf":
                raise TypeError(f"weights[{i}] ({p.name}) must hold numbers, got dtype {a.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"weights[{i}] ({p.name}) must have shape {p.shape}, got {a.shape}")
            with np.errstate(over="ignore"):  # checked just below: 1e300 becomes inf in float32
                a = a.astype(self.dtype)
            if not np.isfinite(a).all():
                raise ValueError(f"weights[{i}] ({p.name}) contains NaN or inf, or values too large for {self.dtype}")
            arrays.append(a)
        for a, p in zip(arrays, self._params):
            p.value[...] = a

    # -- files --------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Save architecture, weights, compile settings and optimizer state to one safe file.

        See :mod:`nnlib.saving` for the format; reload with :func:`nnlib.load_model`.
        """
        saving.save_model(self, path)

    def save_weights(self, path: str) -> None:
        """Save only the weights, for :meth:`load_weights` into a model of the same shape."""
        saving.save_weights(self, path)

    def load_weights(self, path: str) -> None:
        """Load weights from a file written by :meth:`save_weights` or :meth:`save`."""
        saving.load_weights(self, path)

    def export(self, path: str, dtype: Any = None) -> Any:
        """Write this built model's ``predict`` to ``path`` as an ONNX file and return its ``onnx.ModelProto``.

        Input ``"input"`` ``(N, *input_shape)`` (images channels-last), output ``"output"``
        ``(N, *output_shape)``, as ``predict``; ``dtype`` (None: the model's) sets the graph's float dtype.
        Needs the onnx package (``pip install "nnlib[onnx]"``); see :mod:`nnlib.onnx`.
        """
        return onnx_export.export(self, path, dtype)

    # -- display ------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], Any] = print) -> None:
        """Print each layer's name and type, output shape and parameter count."""
        rows = [("Layer (type)", "Output shape", "Params")]
        for layer in self.layers:
            shape = format_shape(layer.output_shape, "None") if layer.built else "?"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         f"{sum(p.size for p in layer.parameters()):,}" if layer.built else "?"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        line = "-" * (sum(widths) + 4)
        text = [f'Model "{self.name}"', line]
        for j, row in enumerate(rows):
            text.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")
            if j == 0:
                text.append(line)
        text += [line, f"Total params: {self.count_params():,}" if self.built else "Total params: ? (not built)"]
        print_fn("\n".join(text))

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r}, seed={self.seed}, dtype={self.dtype.name!r})"

    # Pickle and deepcopy turn the parameter views into separate arrays; re-pack them
    # into one buffer so the optimizer's flat fast path updates the real weights.
    def __setstate__(self, state: dict[str, Any]) -> None:
        state.pop("_buffers", None)  # pickles from before the batch buffers moved to data.BatchIterator
        self.__dict__.update(state)
        if self._params:
            self._flat_grads = pack(self._params, self.dtype)[1]
