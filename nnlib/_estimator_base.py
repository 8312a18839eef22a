"""The shared core of :mod:`nnlib.estimators`: what the classifier and the regressor have in common.

- :class:`_BaseNeuralNet`: the hyperparameters and their validation (in ``fit``, never in
  ``__init__``, per scikit-learn), the precision rule for ``dtype``, building the
  :class:`~nnlib.model.Sequential`, and the training loop behind ``fit`` and ``partial_fit``;
- :class:`_EpochMonitor`: the early-stopping callback that records validation scores and
  restores the best epoch's weights;
- :func:`_check_number`: the range check that names the parameter.

Subclasses provide ``_loss``, ``_targets`` and ``_score_outputs``. Nothing here is public:
import the estimators from :mod:`nnlib.estimators`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import layers as layers_module
from . import optimizers as optimizers_module
from .callbacks import Callback
from .data import split_indices
from .layers import Dense, Dropout, Layer
from .model import Sequential

_ACTIVATION_ALIASES = {"identity": "linear", "logistic": "sigmoid"}  # scikit-learn's MLP names


class _EpochMonitor(Callback):
    """For early stopping: each epoch's validation score and loss; at the end, restores the
    weights of the epoch with the lowest validation loss."""

    def __init__(self, score: Callable[[Sequential], float]) -> None:
        super().__init__()
        self.score = score
        self.scores: list[float] = []
        self.val_losses: list[float] = []
        self.best_loss, self.best_weights, self.best_epoch = np.inf, None, -1

    def on_epoch_end(self, epoch, logs=None):
        self.scores.append(float(self.score(self.model)))
        self.val_losses.append(float(logs["val_loss"]))
        if self.val_losses[-1] < self.best_loss:
            self.best_loss, self.best_epoch = self.val_losses[-1], len(self.val_losses) - 1
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _check_number(value: Any, name: str, low: float, high: float = np.inf, *, integer: bool = False,
                  low_open: bool = False, high_open: bool = True) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {value!r}")
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok or not np.isfinite(value):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


class _BaseNeuralNet(BaseEstimator):
    """Shared parameters, model construction and the training loop."""

    _numeric_y = True

    def __init__(self, hidden_layer_sizes: Any = (100,), *, activation: Any = "relu", optimizer: str = "adam",
                 lr: float = 1e-3, batch_size: int | str = 200, max_epochs: int = 200, tol: float = 1e-4,
                 n_iter_no_change: int = 10, early_stopping: bool = False, validation_fraction: float = 0.1,
                 alpha: float = 0.0, dropout: float = 0.0, random_state: Any = None, verbose: bool = False,
                 dtype: str | type | np.dtype | None = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.alpha = alpha
        self.dropout = dropout
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype

    # -- hyperparameters ---------------------------------------------------------------
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        for s in sizes:
            _check_number(s, "each of hidden_layer_sizes", 1, integer=True)
        return [int(s) for s in sizes]

    def _activations(self, n_hidden: int) -> list[str]:
        acts = [self.activation] * n_hidden if isinstance(self.activation, str) else list(self.activation)
        if len(acts) != n_hidden:
            raise ValueError(f"activation must be a name or one name per hidden layer ({n_hidden}), "
                             f"got {self.activation!r}")
        names = [_ACTIVATION_ALIASES.get(a, a) if isinstance(a, str) else a for a in acts]
        for a in names:
            layers_module.activations.lookup(a)  # ValueError listing the valid names
        return names

    def _np_dtype(self) -> np.dtype | None:
        """The forced precision, or None to follow the input (scikit-learn's rule)."""
        if self.dtype is None:
            return None
        try:
            dtype = np.dtype(self.dtype)
        except (TypeError, ValueError):  # not a dtype at all, e.g. 3 or "nonsense"
            dtype = None
        # "is None" first: NumPy's dtype == None is True for float64, so `in` alone would pass it
        if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")
        return dtype

    def _input_dtype(self, first: bool) -> np.dtype | tuple[type, type]:
        """What ``validate_data`` converts X to in ``fit``, which fixes the network's precision.

        A continued fit (``partial_fit``) keeps the network's precision. A new one takes a
        forced ``dtype``; with None, the pair lets ``validate_data`` keep float32 input as it
        is and convert everything else to the first entry, float64 (as ``MLPClassifier`` does).
        """
        if not first:
            return self.model_.dtype
        forced = self._np_dtype()
        return (np.float64, np.float32) if forced is None else forced

    def _check_params(self) -> None:
        """Validate every hyperparameter (in fit, never in __init__, per scikit-learn)."""
        self._activations(len(self._hidden_sizes()))
        if not isinstance(self.optimizer, str):
            raise TypeError(f"optimizer must be a name such as 'adam', got {self.optimizer!r}")
        optimizers_module.registry.lookup(self.optimizer)
        _check_number(self.lr, "lr", 0, low_open=True)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_number(self.batch_size, "batch_size", 1, integer=True)
        _check_number(self.max_epochs, "max_epochs", 1, integer=True)
        _check_number(self.tol, "tol", 0)
        _check_number(self.n_iter_no_change, "n_iter_no_change", 1, integer=True)
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise TypeError(f"early_stopping must be a bool, got {self.early_stopping!r}")
        _check_number(self.validation_fraction, "validation_fraction", 0, 1, low_open=True)
        _check_number(self.alpha, "alpha", 0)
        _check_number(self.dropout, "dropout", 0, 1)
        self._np_dtype()

    def _batch(self, n_samples: int) -> int:
        """The batch size, clipped to the number of samples (scikit-learn's "auto" is 200)."""
        size = 200 if self.batch_size == "auto" else int(self.batch_size)
        return max(1, min(size, n_samples))

    # -- model -------------------------------------------------------------------------
    def _new_model(self, n_features: int, n_outputs: int, n_samples: int, dtype: np.dtype) -> Sequential:
        sizes = self._hidden_sizes()
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        layers: list[Layer] = []
        for units, act in zip(sizes, self._activations(len(sizes))):
            layers.append(Dense(units, activation=act))
            if self.dropout > 0:
                layers.append(Dropout(self.dropout))  # seeded from the model's seed
        layers.append(Dense(n_outputs))
        model = Sequential(layers, seed=seed, dtype=dtype, name=type(self).__name__.lower())
        model.build(n_features)
        # scikit-learn's alpha adds alpha/(2 n_batch) ||W||^2 to each batch's mean loss, i.e.
        # alpha/n_batch * W to the gradient: the same as weight decay alpha/n_batch.
        decay = float(self.alpha) / self._batch(n_samples)
        model.compile(optimizer=optimizers_module.get(self.optimizer, lr=float(self.lr), weight_decay=decay),
                      loss=self._loss())
        return model

    def _train(self, X: np.ndarray, T: np.ndarray, truth: np.ndarray, strata: np.ndarray | None,
               stop_rule: bool, epochs: int) -> None:
        """Run ``epochs`` epochs (all of ``fit``, or one for ``partial_fit``) and record the curves.

        ``T`` is what the loss trains on, ``truth`` what the validation score compares
        with, ``strata`` integer labels that stratify the validation split.
        """
        model = self.model_
        validation, monitor = None, None
        if stop_rule and self.early_stopping:
            fit_idx, val_idx = split_indices(X.shape[0], float(self.validation_fraction), model.seed, strata)
            x_val, truth_val = X[val_idx], truth[val_idx]
            validation = (x_val, T[val_idx])
            monitor = _EpochMonitor(lambda m: self._score_outputs(m.predict(x_val), truth_val))
            X, T = X[fit_idx], T[fit_idx]
        start = self.n_iter_
        history = model.fit(
            X, T, epochs=start + epochs, initial_epoch=start, batch_size=self._batch(X.shape[0]),
            validation_data=validation, tol=float(self.tol) if stop_rule else None,
            # scikit-learn stops once more than n_iter_no_change epochs in a row fail to improve
            patience=int(self.n_iter_no_change) + 1, monitor="val_loss" if validation else "loss",
            callbacks=[monitor] if monitor else None, verbose=2 if self.verbose else 0,
        )
        self.n_iter_ += history.epochs_run
        self.loss_curve_.extend(float(v) for v in history.history.get("loss", []))
        if monitor is not None:
            self.validation_scores_ = monitor.scores
            self.validation_loss_curve_ = monitor.val_losses
            self.best_loss_ = monitor.best_loss
            self.best_validation_score_ = monitor.scores[monitor.best_epoch]
        else:
            self.best_loss_ = min(self.loss_curve_)
        if stop_rule and history.stopped_epoch is None:
            watched = "validation loss" if validation else "training loss"
            warnings.warn(
                f"{type(self).__name__}: max_epochs={self.max_epochs} reached and the optimization hasn't "
                f"converged yet (the {watched} still improved by more than tol={self.tol:g} within "
                f"n_iter_no_change+1={self.n_iter_no_change + 1} epochs); raise max_epochs or tol.",
                ConvergenceWarning, stacklevel=4,  # the caller of fit
            )

    def _fit(self, X: Any, y: Any, *, partial: bool, classes: Any = None) -> _BaseNeuralNet:
        first = not (partial and hasattr(self, "model_"))
        self._check_params()
        X, y = validate_data(self, X, y, reset=first, dtype=self._input_dtype(first), multi_output=True,
                             y_numeric=self._numeric_y)
        # Float targets stay as they are: the network casts them to its precision once (Loss.prepare_targets).
        T, truth, strata, n_outputs = self._targets(y, first=first, partial=partial, classes=classes)
        if first:
            self.model_ = self._new_model(X.shape[1], n_outputs, X.shape[0], X.dtype)
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.n_outputs_ = n_outputs
        self._train(X, T, truth, strata, stop_rule=not partial, epochs=1 if partial else int(self.max_epochs))
        return self

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for ``X`` (cast to the network's precision) as the loss presents them, in float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype)
        return self.model_.predict(X).astype(np.float64)

