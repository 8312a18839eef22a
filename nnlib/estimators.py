"""scikit-learn estimators built on :class:`~nnlib.model.Sequential`.

>>> from nnlib.estimators import NeuralNetClassifier
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> clf = make_pipeline(StandardScaler(), NeuralNetClassifier((64,), max_epochs=50, random_state=0))

Both estimators pass ``sklearn.utils.estimator_checks.parametrize_with_checks``
(see ``tests/test_estimators.py``), so they work in Pipelines, ``GridSearchCV``,
``cross_val_score`` and ``clone``. Parameters keep scikit-learn's MLP names and
meanings where those exist; ``model_`` is the trained ``Sequential``.

What the core does not have yet is provided here, privately:

- class weights: a weighted softmax cross-entropy, obtained by giving the core loss
  one-hot target rows scaled by each sample's class weight (see
  :meth:`NeuralNetClassifier._targets`);
- dropout: :class:`nnlib.Dropout`, inverted dropout after every hidden layer;
- pickling: an unpickled ``Sequential`` would not train further (its parameters lose
  their shared flat buffer), so ``__setstate__`` rebuilds ``model_`` (:func:`_relinked`).

Pickles of fitted estimators round-trip (scikit-learn's convention). Load them only
from trusted sources: unpickling runs arbitrary code. For a safe file, save the
network with ``est.model_.save(path)`` and read it back with :func:`nnlib.load_model`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import layers as layers_module
from . import optimizers as optimizers_module
from .callbacks import Callback
from .data import split_indices
from .layers import Dense, Dropout, Layer
from .model import Sequential

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]

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
                 dtype: str = "float32") -> None:
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

    def _np_dtype(self) -> np.dtype:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return dtype

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
    def _new_model(self, n_features: int, n_outputs: int, n_samples: int) -> Sequential:
        sizes = self._hidden_sizes()
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        layers: list[Layer] = []
        for units, act in zip(sizes, self._activations(len(sizes))):
            layers.append(Dense(units, activation=act))
            if self.dropout > 0:
                layers.append(Dropout(self.dropout))  # seeded from the model's seed
        layers.append(Dense(n_outputs))
        model = Sequential(layers, seed=seed, dtype=self._np_dtype(), name=type(self).__name__.lower())
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
        dtype = self._np_dtype()
        X, y = validate_data(self, X, y, reset=first, dtype=dtype, multi_output=True, y_numeric=self._numeric_y)
        T, truth, strata, n_outputs = self._targets(y, first=first, partial=partial, classes=classes)
        if first:
            self.model_ = self._new_model(X.shape[1], n_outputs, X.shape[0])
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.n_outputs_ = n_outputs
        self._train(X, T, truth, strata, stop_rule=not partial, epochs=1 if partial else int(self.max_epochs))
        return self

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for ``X`` as the loss presents them, in float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self._np_dtype())
        return self.model_.predict(X).astype(np.float64)

    def _expected_failed_checks(self) -> dict[str, str]:
        """scikit-learn checks this estimator may fail, with the reason: {check name: reason}.

        scikit-learn >= 1.6 dropped the ``_xfail_checks`` tag; pass this method as
        ``parametrize_with_checks(..., expected_failed_checks=lambda e: e._expected_failed_checks())``.
        """
        if self._np_dtype() != np.float32:
            return {}
        return {"check_methods_subset_invariance": (
            "float32 (the default dtype): BLAS rounds a row's dot products differently depending on how many "
            "rows share the matmul (gemv for one row, gemm tiles for many), so outputs for a row predicted alone "
            "and in a batch can differ by a few float32 ulps (~1e-7 relative), which is what this check "
            "tolerates; with dtype='float64' the check passes")}


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Units of each hidden ``Dense`` layer; ``()`` gives a linear model.
    activation : str or sequence of str, default "relu"
        Hidden-layer activation, one name for all or one per layer: "relu", "leaky_relu",
        "tanh", "sigmoid" (or scikit-learn's "logistic"), "linear" (or "identity").
    optimizer : {"adam", "sgd", "momentum"}, default "adam"
        Any name in ``nnlib.optimizers.registry``, built with ``lr`` and ``alpha``.
    lr : float > 0, default 1e-3
        Learning rate (scikit-learn's ``learning_rate_init``).
    batch_size : int >= 1 or "auto", default 200
        Samples per step, clipped to the number of samples ("auto" means 200).
    max_epochs : int >= 1, default 200
        Passes over the data in ``fit`` (scikit-learn's ``max_iter``).
    tol : float >= 0, default 1e-4
        An epoch fails to improve when its loss is above ``best - tol``.
    n_iter_no_change : int >= 1, default 10
        ``fit`` stops when more than ``n_iter_no_change`` epochs in a row fail to improve
        (scikit-learn's rule); otherwise it runs ``max_epochs`` epochs and warns
        ``ConvergenceWarning``.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified for single-label
        classification), watch the validation loss instead of the training loss, and
        restore the weights of the epoch with the lowest validation loss.
    validation_fraction : float in (0, 1), default 0.1
    alpha : float >= 0, default 0.0
        L2 penalty with scikit-learn's scale, ``alpha / (2 n_batch) ||w||^2`` added to each
        batch's mean loss: it becomes the optimizer's weight decay ``alpha / batch_size``.
        Unlike scikit-learn's MLP, biases are decayed too.
    dropout : float in [0, 1), default 0.0
        Inverted-dropout rate after every hidden layer while training.
    random_state : int, RandomState instance or None, default None
        Seeds the weights, shuffling, validation split and dropout masks; None draws a new
        seed for every ``fit``.
    verbose : bool, default False
        Print one line per epoch.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the network; outputs are returned as float64.
"""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names.
    n_outputs_ : int
    model_ : Sequential
        The trained network (``model_.summary()``, ``model_.save(path)``).
    loss_curve_ : list of float
        Mean training loss of each epoch (without the L2 term).
    validation_scores_ : list of float or None
        With ``early_stopping``, the validation {score} of each epoch, else None.
    validation_loss_curve_ : list of float or None
        With ``early_stopping``, the validation loss of each epoch, else None.
    best_loss_ : float
        Lowest loss watched by the stop rule: the training loss, or the validation loss
        with ``early_stopping`` (whose weights are restored).
    best_validation_score_ : float or None
        With ``early_stopping``, the validation {score} of the restored epoch.
    n_iter_ : int
        Epochs run, ``partial_fit`` calls included.

    Notes
    -----
    Pickling a fitted estimator works and round-trips exactly, but pickles must only be
    loaded from trusted sources: unpickling can run arbitrary code. For a safe file use
    ``est.model_.save(path)`` and :func:`nnlib.load_model` (after ``import
    nnlib.estimators`` if ``dropout > 0``).
"""


class NeuralNetClassifier(ClassifierMixin, _BaseNeuralNet):
    _numeric_y = False

    def __init__(self, hidden_layer_sizes: Any = (100,), *, activation: Any = "relu", optimizer: str = "adam",
                 lr: float = 1e-3, batch_size: int | str = 200, max_epochs: int = 200, tol: float = 1e-4,
                 n_iter_no_change: int = 10, early_stopping: bool = False, validation_fraction: float = 0.1,
                 alpha: float = 0.0, dropout: float = 0.0, random_state: Any = None, verbose: bool = False,
                 dtype: str = "float32", class_weight: Any = None) -> None:
        super().__init__(hidden_layer_sizes, activation=activation, optimizer=optimizer, lr=lr,
                         batch_size=batch_size, max_epochs=max_epochs, tol=tol, n_iter_no_change=n_iter_no_change,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, alpha=alpha,
                         dropout=dropout, random_state=random_state, verbose=verbose, dtype=dtype)
        self.class_weight = class_weight

    def _loss(self) -> str:
        return "binary_cross_entropy" if self._multilabel else "softmax_cross_entropy"

    def _targets(self, y: Any, *, first: bool, partial: bool, classes: Any
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """Labels -> (loss targets, truth for the validation score, strata, outputs).

        Sets ``classes_`` on the first call; later calls must use the same classes.
        """
        if hasattr(y, "toarray"):  # sparse multilabel indicator
            y = y.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"{type(self).__name__} supports binary, multiclass and multilabel-indicator "
                             f"targets, got {kind}")
        multilabel = kind == "multilabel-indicator"
        if first:
            if partial and classes is None and not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit")
            found = unique_labels(y) if classes is None or multilabel else unique_labels(classes)
            if not multilabel and len(found) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, but the data "
                                 f"contains only one class: {found[0]!r}")
            if multilabel and self.class_weight is not None:
                raise ValueError("class_weight is not supported for multilabel targets")
            self._multilabel, self._label_dtype, self.classes_ = multilabel, y.dtype, found
        else:
            if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(f"classes={classes!r} differs from classes_={self.classes_!r} of the first call")
            if multilabel != self._multilabel:
                raise ValueError(f"y is {kind}, but the estimator was fitted on "
                                 f"{'multilabel' if self._multilabel else 'single-label'} targets")
        n_classes = len(self.classes_)
        if multilabel:
            if y.shape[1] != n_classes:
                raise ValueError(f"y has {y.shape[1]} labels, the estimator has {n_classes}")
            return y.astype(self._np_dtype()), y, None, n_classes
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not in classes_ {self.classes_.tolist()}: {unknown.tolist()}")
        codes = np.searchsorted(self.classes_, y).astype(np.intp)
        if self.class_weight is None:
            return codes, codes, codes, n_classes
        if isinstance(self.class_weight, str) and self.class_weight == "balanced" and partial:
            raise ValueError("class_weight='balanced' is not supported by partial_fit: pass the dict that "
                             "compute_class_weight('balanced', classes=..., y=...) gives instead")
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        # Weighted cross-entropy through the core loss: with target rows t_n = w_n onehot(y_n),
        # SoftmaxCrossEntropy gives L = (1/N) sum_n w_n (-log p_n[y_n]) and dz = (w_n p_n - t_n) / N.
        rows = np.zeros((len(codes), n_classes), dtype=self._np_dtype())
        rows[np.arange(len(codes)), codes] = weights[codes]
        return rows, codes, codes, n_classes

    def _score_outputs(self, proba: np.ndarray, truth: np.ndarray) -> float:
        """Accuracy (subset accuracy for multilabel), for the validation scores."""
        if self._multilabel:
            return float(np.mean(np.all((proba > 0.5) == (truth > 0.5), axis=1)))
        return float(np.mean(proba.argmax(axis=1) == truth))

    def fit(self, X: Any, y: Any) -> NeuralNetClassifier:
        """Train a new network on (X, y) for up to ``max_epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, C)
            Class labels of any type scikit-learn accepts (binary or multiclass), or a
            multilabel indicator matrix of 0/1.

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NeuralNetClassifier:
        """One epoch on (X, y), continuing the current network (a new one on the first call).

        No validation split and no stop rule; ``n_iter_`` and ``loss_curve_`` grow by one.

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, C)
        classes : array-like of shape (C,), optional
            Every class that will ever appear; required on the first call (for a
            multilabel indicator ``y`` its columns are the classes).

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=True, classes=classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax), or per-label probabilities (sigmoid) for multilabel.

        Parameters
        ----------
        X : array-like of shape (N, D_in)

        Returns
        -------
        ndarray of shape (N, C), float64
            Columns follow ``classes_``.
        """
        proba = self._outputs(X)
        if not self._multilabel:
            proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class (multilabel: every label with probability > 0.5).

        Parameters
        ----------
        X : array-like of shape (N, D_in)

        Returns
        -------
        ndarray of shape (N,) with the labels' type, or (N, C) of 0/1 for multilabel
        """
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba > 0.5).astype(self._label_dtype)
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralNetRegressor(RegressorMixin, _BaseNeuralNet):
    _numeric_y = True

    def _loss(self) -> str:
        return "mse"

    def _targets(self, y: Any, *, first: bool, partial: bool, classes: Any
                 ) -> tuple[np.ndarray, np.ndarray, None, int]:
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if first:
            self._y_ndim = y.ndim
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs, the estimator was fitted with {self.n_outputs_}")
        return y.astype(self._np_dtype()), y, None, n_outputs

    def _score_outputs(self, out: np.ndarray, truth: np.ndarray) -> float:
        """R^2 (uniform average over outputs), for the validation scores."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # a single validation sample
            return float(r2_score(truth, out.reshape(truth.shape)))

    def fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """Train a new network on (X, y) for up to ``max_epochs`` epochs (MSE loss).

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, D_out)

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """One epoch on (X, y), continuing the current network (a new one on the first call).

        No validation split and no stop rule; ``n_iter_`` and ``loss_curve_`` grow by one.

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, D_out)

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values.

        Parameters
        ----------
        X : array-like of shape (N, D_in)

        Returns
        -------
        ndarray of shape (N,) if ``y`` was 1-D in fit, else (N, D_out); float64
        """
        out = self._outputs(X)
        return out.ravel() if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


NeuralNetClassifier.__doc__ = f"""A neural-network classifier: hidden ``Dense`` layers, softmax cross-entropy.

    Binary and multiclass labels of any type train a softmax over ``len(classes_)``
    outputs; a multilabel indicator ``y`` (N, C) trains C sigmoid outputs with binary
    cross-entropy. Training is mini-batch with nnlib's optimizers, shuffled per epoch
    from ``random_state``.
{_PARAMETERS_DOC}    class_weight : dict, "balanced" or None, default None
        Weights of each class in the loss: ``{{label: weight}}`` (missing labels weigh 1),
        or "balanced", ``n_samples / (n_classes * bincount(y))``. The loss becomes
        ``(1/N) sum_n w[y_n] CE_n``. Not for multilabel targets; "balanced" is refused
        by ``partial_fit``.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted labels (for multilabel ``y``: ``arange(C)``).
{_ATTRIBUTES_DOC.format(score="accuracy")}
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nnlib.estimators import NeuralNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralNetClassifier((32,), lr=1e-2, batch_size=16, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).tolist(), clf.n_iter_ < clf.max_epochs
    ([0, 0, 0], True)
    """

NeuralNetRegressor.__doc__ = f"""A neural-network regressor: hidden ``Dense`` layers, a linear output, MSE.

    ``y`` may be 1-D (N,) or multi-output (N, D_out); ``predict`` returns the same shape.
{_PARAMETERS_DOC}
    Attributes
    ----------
{_ATTRIBUTES_DOC.format(score="R^2")}
    Examples
    --------
    >>> import numpy as np
    >>> from nnlib.estimators import NeuralNetRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = NeuralNetRegressor((32,), lr=1e-2, batch_size=16, random_state=0).fit(X, X.ravel() ** 2)
    >>> reg.predict([[0.5]]).shape, reg.score(X, X.ravel() ** 2) > 0.95
    ((1,), True)
    """
